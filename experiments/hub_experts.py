"""The hub experiments' experts: overlapping class subsets of animal_mnist and MNIST digits,
and the configs they are trained with (shared by build_hub.py and hub_scaling.py)."""

import pathlib

from experiments import smoke
from mll_jax import config_files, sweep, train

REPO = pathlib.Path(__file__).resolve().parents[1]

# Overlapping class subsets: every class is covered by two or three experts.
ANIMAL_EXPERTS = {
    "pets": "cat,dog,bird", "farm": "cow,sheep,horse", "savanna": "elephant,giraffe,zebra",
    "equines": "horse,zebra,cow", "large": "bear,elephant,cow,horse",
    "small": "bird,cat,sheep,dog", "stripes_spots": "zebra,giraffe,cat,dog",
    "wild": "bear,zebra,bird",
}
DIGIT_EXPERTS = {
    "digits_012": "0,1,2", "digits_234": "2,3,4", "digits_456": "4,5,6",
    "digits_678": "6,7,8", "digits_890": "8,9,0", "digits_odd": "1,3,5,7,9",
}


def config(name: str, quick: bool, **overrides):
  """`configs/<name>.py` as the hub experiments train it (`mini`; `mu` when quick)."""
  config = config_files.load(REPO / "configs" / f"{name}.py").get_config(
      "mu" if quick else ("mini" if name == "mae" else None))
  if quick:
    overrides = {**smoke.shrink(config), **overrides}
  return sweep.apply_overrides(config, overrides)


def experts(mnist_dir: str | None, quick: bool) -> dict:
  """Expert name -> (data set, classes)."""
  chosen = {n: ("animal_mnist", c) for n, c in ANIMAL_EXPERTS.items()}
  if mnist_dir:
    chosen.update({n: ("mnist", c) for n, c in DIGIT_EXPERTS.items()})
  return dict(list(chosen.items())[:3]) if quick else chosen


def train_expert(runs_dir: pathlib.Path, name: str, data: str, classes: str, quick: bool,
                 mnist_dir: str | None) -> pathlib.Path:
  """Trains (or finds finished) an expert on `classes` (comma-separated) of `data`
  (animal_mnist or mnist) from the shared MAE encoder in `runs_dir/mae`; returns its workdir.

  The budget is the data set's fine-tuning recipe from a pre-trained encoder on all its labels
  (configs/finetune.py `pretrained_overrides`), in epochs over the classes' images, so an
  expert of more classes, or on the larger MNIST, gets as many passes as one of fewer."""
  overrides = {"classes": classes, "init_from": str(runs_dir / "mae")}
  if data == "mnist":
    overrides.update({"data.name": "idx/mnist", "data.manual_dir": mnist_dir})
  if not quick:
    finetune = config_files.load(REPO / "configs" / "finetune.py")
    overrides.update(log_steps=100, **finetune.pretrained_overrides(data, "100%"))
  workdir = runs_dir / name
  expert_config = config("expert", quick, **overrides)
  # Test accuracy at the end only (and step 0): nothing is chosen on it.
  expert_config.evals.classification.log_steps = 10**9
  train.run(expert_config, workdir)
  return workdir
