"""The hub experiments' experts: overlapping class subsets of animal_mnist and MNIST digits,
their architectures, and the configs they are trained with (shared by build_hub.py and
hub_scaling.py)."""

import itertools
import pathlib

from experiments import smoke
import configs  # noqa: E402
from configs import finetune  # noqa: E402
from mll_jax import sweep, train

REPO = pathlib.Path(__file__).resolve().parents[1]

# Overlapping class subsets in which every pair of a data set's classes is held by at least one
# expert (`uncovered_pairs` is empty; tests/test_chco_confusion.py). CHCO combines heads and
# cannot add a distinction no head learnt: on the hub built before 2026-12-04 (digit triples
# 012, 234, 456, 678, 890 and the odd digits) 30 of its 31 errors on the task 3,4,6,9 were 4
# against 9, a pair no expert held (chco_confusion_mnist_3-4-6-9.md as of commit 92c1b09), and 20 of
# 45 digit pairs and 19 of 45 animal pairs were held by none. Each design is the earlier one
# with the fewest classes added to cover every pair, experts of at most 5 classes, the first
# such in enumeration order; no task or test result chose among them. `farm`, `equines` and
# `wild` are unchanged (as is `digits_odd`); an expert whose old name no longer describes it is
# `<old name>_plus`.
ANIMAL_EXPERTS = {
    "pets_plus": "cat,dog,bird,cow,horse", "farm": "cow,sheep,horse",
    "savanna_plus": "elephant,giraffe,zebra,bird,sheep", "equines": "horse,zebra,cow",
    "large": "bear,elephant,cow,horse,giraffe", "small_plus": "bird,cat,sheep,dog,bear",
    "stripes_spots_plus": "zebra,giraffe,cat,dog,elephant", "wild": "bear,zebra,bird",
}
DIGIT_EXPERTS = {
    "digits_01236": "0,1,2,3,6", "digits_23458": "2,3,4,5,8", "digits_04567": "0,4,5,6,7",
    "digits_26789": "2,6,7,8,9", "digits_01489": "0,1,4,8,9", "digits_odd": "1,3,5,7,9",
}

# The model of each expert, in turn over a data set's experts. "vit": every expert the `mini`
# ViT fine-tuned from its data set's MAE encoder. "mixed" (issue 14): ViTs of two sizes beside the
# convolutional family, so CHCO's cost term compares models of different FLOPs per image. The
# other models train from scratch (the MAE encoders are `mini` ViTs). ResNet-18 (about 1 GFLOP
# per 28x28 image with the small stem) is kept to animal_mnist's 2,400-4,000 image experts:
# on MNIST's 30,000 (5 digits) it would take over an hour per expert on the 2-core CPU.
ARCHITECTURES = {
    "vit": {"animal_mnist": ("mini",), "mnist": ("mini",)},
    "mixed": {"animal_mnist": ("mini", "resnet18", "tiny", "cnn_s"),
              "mnist": ("mini", "cnn_s", "tiny")},
}
PRETRAINED_MODEL = "mini"  # the MAE encoders' size: experts of this model start from them
# Each data set's experts start from an MAE pre-trained on that data set's training images (no
# labels): the hub built before 2026-12-02 started the digit experts from the animal_mnist
# encoder, which had never seen a digit, and 2 of its 6 digit experts lost to 1-NN on pixels.
# Passes: configs/mae.py's default (15) on animal_mnist; on MNIST's 54,000 images the 5 of the
# 2026-12-02 MNIST label-efficiency study, whose fine-tune from it reached 0.992 on all ten
# digits (the 2026-12-06 study's 15-epoch MAE reaches the same 0.992: label_efficiency_mnist.md).
ENCODER_EPOCHS = {"animal_mnist": None, "mnist": 5.0}
# Passes for the convolutional experts from scratch (and the small CNN beside each run in
# experiments/hub_baselines.py): the reference CNN of experiments/baselines.py reaches 0.971 on
# all of animal_mnist in 15 (the ViTs' 40 would cost a ResNet-18 expert over half an hour
# here), and 0.991 on all of MNIST in 6, its curve flat (baselines_mnist.md).
CNN_EPOCHS = {"animal_mnist": 15.0, "mnist": 6.0}
# Passes for the `mini` experts from their data set's MAE encoder: the fine-tuning recipe's
# budgets at 100% labels (recipe_probe_experts.md, with the MIN_STEPS floor below; MNIST's 6
# since the 2026-12-02 study found 4 still rising). Pinned here, not read from
# configs/finetune.py, so that the committed hub build regenerates as it was run whatever that
# table is later changed to.
PRETRAINED_EPOCHS = {"animal_mnist": 20.0, "mnist": 6.0}
# Every expert, oracle and generalist holds out this fraction of its classes' training images
# and logs its accuracy there CURVE_POINTS times: the learning curve that shows it converged
# (test is read at the end only, and nothing is chosen on it).
VALIDATION = 0.1
CURVE_POINTS = 10
# The fewest steps an expert, oracle or generalist takes (config.min_steps). At 20 passes a
# 3-class animal expert (2,160 images) gets 338 steps; on the validation holdout 50 passes
# (844 steps) gained +0.021 (farm) and +0.008 (pets) over 20
# (experiments/results/recipe_probe_experts.md). A floor of 500 steps, tried first, left
# `farm` at 0.925 on validation (as at 338) and `pets_plus`'s curve still rising (+0.025 over
# its last third; hub_build.md of 2026-12-04): on a cosine schedule the end of the decay, not
# the step count alone, sets where a run lands. So the floor is the probe's 50-pass run.
MIN_STEPS = 844
VALIDATION_METRIC = "validation/accuracy"
TEST_METRIC = "classification/accuracy"


def config(name: str, quick: bool, model: str | None = None, data: str = "", **overrides):
  """`configs/<name>.py` as the hub experiments train it (`mini`, or `model`; its test-sized
  stand-in when quick; on the config's default data set, or `data`)."""
  model = model or ("mini" if name == "mae" else None)
  arg = ",".join(filter(None, [smoke.model(model) if quick else model, data])) or None
  config = configs.get_config(name, arg)
  if quick:
    overrides = {**smoke.shrink(config), **overrides}
  return sweep.apply_overrides(config, overrides)


def experts(mnist_dir: str | None, quick: bool, architectures: str = "vit") -> dict:
  """Expert name -> (data set, classes, model); models in turn from ARCHITECTURES."""
  if architectures not in ARCHITECTURES:
    raise ValueError(f"Unknown hub architectures {architectures!r}; known: "
                     f"{', '.join(ARCHITECTURES)}.")
  groups = [("animal_mnist", ANIMAL_EXPERTS)] + ([("mnist", DIGIT_EXPERTS)] if mnist_dir else [])
  chosen = {}
  for data, subsets in groups:
    models = ARCHITECTURES[architectures][data]
    chosen.update({n: (data, c, models[i % len(models)])
                   for i, (n, c) in enumerate(subsets.items())})
  return dict(list(chosen.items())[:3]) if quick else chosen


def pair_experts(classes, experts: dict) -> dict:
  """`{(a, b): [experts trained on both a and b]}` for every pair of `classes`: a pair no
  expert holds is one that CHCO's combination of heads can only separate through experts that
  each saw one of the two (experiments/chco_confusion.py)."""
  return {(a, b): [n for n, held in experts.items() if {a, b} <= set(held.split(","))]
          for a, b in itertools.combinations(classes, 2)}


def uncovered_pairs(experts: dict) -> list[tuple[str, str]]:
  """The pairs of the experts' classes (all of them, in sorted order) that no expert holds both
  of."""
  classes = sorted({c for held in experts.values() for c in held.split(",")})
  return [pair for pair, holders in pair_experts(classes, experts).items() if not holders]


def encoder_dir(runs_dir: pathlib.Path, data: str) -> pathlib.Path:
  """Where `data`'s MAE encoder is trained (animal_mnist's keeps the name of the builds that had
  one encoder, so that their runs are reused)."""
  return runs_dir / ("mae" if data == "animal_mnist" else f"mae_{data}")


def encoder_config(data: str, quick: bool, mnist_dir: str | None):
  """The MAE pre-training of `data`'s encoder (`ENCODER_EPOCHS`)."""
  overrides = {}
  if data == "mnist":
    overrides["data.manual_dir"] = mnist_dir
  if ENCODER_EPOCHS[data] and not quick:
    overrides["num_epochs"] = ENCODER_EPOCHS[data]
  return config("mae", quick, data="" if data == "animal_mnist" else data, **overrides)


def train_encoders(runs_dir: pathlib.Path, datasets, quick: bool, mnist_dir: str | None):
  """Pre-trains (or finds finished) the MAE encoder of each of `datasets`."""
  for data in dict.fromkeys(datasets):
    train.run(encoder_config(data, quick, mnist_dir), encoder_dir(runs_dir, data))


def expert_config(runs_dir: pathlib.Path, data: str, classes: str, quick: bool,
                  mnist_dir: str | None, model: str = PRETRAINED_MODEL):
  """The config of a `model` expert on `classes` (comma-separated) of `data` (animal_mnist or
  mnist).

  The `mini` ViT starts from the data set's MAE encoder (`encoder_dir`), for the data set's
  fine-tuning recipe from a pre-trained encoder on all its labels (configs/finetune.py
  `pretrained_overrides`) for `PRETRAINED_EPOCHS`; other models train from scratch for the
  recipe's from-scratch budget. Budgets are in epochs over the classes' images, so an expert of
  more classes, or on the larger MNIST, gets as many passes as one of fewer. `VALIDATION` of
  those images is held out for the expert's validation curve."""
  overrides = {"classes": classes, "data.validation": VALIDATION}
  if data == "mnist":
    overrides.update({"data.name": "idx/mnist", "data.manual_dir": mnist_dir})
  if model == PRETRAINED_MODEL:
    overrides["init_from"] = str(encoder_dir(runs_dir, data))
    if not quick:
        overrides.update({**finetune.pretrained_overrides(data, "100%"),
                        "num_epochs": PRETRAINED_EPOCHS[data]})
  if not quick:
    overrides.update({"log_steps": 100, "min_steps": MIN_STEPS})
    if model.startswith(("cnn_", "resnet")):
      overrides["num_epochs"] = CNN_EPOCHS[data]
  # The data set's own recipe: its budgets from scratch differ (MNIST's 6 passes over 54,000
  # images, animal_mnist's 40 over 8,000; the mixed hub's `tiny` digit experts were once given
  # animal_mnist's 40, 8,437 steps each).
  result = config("expert", quick, model, data="" if data == "animal_mnist" else data,
                  **overrides)
  # Test accuracy at the end only (and step 0): nothing is chosen on it.
  result.evals.classification.log_steps = 10**9
  result.evals.validation = {"kind": "classification", "split": "holdout", "log_steps": 0,
                             "log_points": CURVE_POINTS, "num_examples": 0, "batch_size": 256}
  return result


def train_expert(runs_dir: pathlib.Path, name: str, data: str, classes: str, quick: bool,
                 mnist_dir: str | None, model: str = PRETRAINED_MODEL) -> pathlib.Path:
  """Trains (or finds finished) the expert of `expert_config` in `runs_dir/name`; returns
  that workdir."""
  workdir = runs_dir / name
  train.run(expert_config(runs_dir, data, classes, quick, mnist_dir, model), workdir)
  return workdir
