"""Recipe probe, validation only: fine-tuning a SimCLR CNN on 1% of animal_mnist's labels.

    python -m experiments.recipe_searches.recipe_probe_few_labels --probe_study_dir=runs/label_efficiency_cnn_s

At 1% (70 labels, 7 per class) the SimCLR `cnn_s` fine-tuned by the CNN recipe is the best
teacher the study has (0.774 on test), and the distilled `mini` ViT only matches its teacher:
the student cannot pass 0.80 unless the teacher does. This probe changes one thing at a time in
the teacher's fine-tuning (regularisers that suit 7 images per class: mixup, label smoothing,
flips of the doodles, mild crops, a lower rate, stronger weight decay) and compares them, on the
validation holdout, over `--probe_seeds` seeds (each seed its own labelled subset, as in the
study). Reuses `pretrain_simclr` of a `--model=cnn_s` label-efficiency study (run that first).
Test is logged once at each run's end, as in every run; it is not read here.
Writes `recipe_probe_few_labels.{md,json}`.
"""

import json
import pathlib

import numpy as np
from absl import app, flags

REPO = pathlib.Path(__file__).resolve().parents[1]

if __name__ == "__main__":  # the process is set up (allocator, libtpu) before JAX loads
  from mll_jax import command
  command.start()

from experiments import label_efficiency as study  # noqa: E402
from mll_jax import sweep  # noqa: E402
from mll_jax.data import label_fractions  # noqa: E402

_STUDY = flags.DEFINE_string("probe_study_dir", "runs/label_efficiency_cnn_s",
                             "The cnn_s label-efficiency study (its pretrain_simclr run).")
_OUT = flags.DEFINE_string("probe_out", str(REPO / "experiments" / "results"),
                           "Results folder.")
_SEEDS = flags.DEFINE_integer("probe_seeds", 2, "Seeds (labelled subsets) per variant.")
_VARIANTS = flags.DEFINE_list("variants", None, "Variants to run (default: all).")

FRACTION = "1%"
# name -> what it changes in the study's simclr_finetune config at 1% (one thing each)
VARIANTS = {
    "recipe": {},
    "mixup_0.2": {"mixup": 0.2},
    "mixup_0.4": {"mixup": 0.4},
    "label_smoothing_0.1": {"label_smoothing": 0.1},
    "shift+flip": {"data.augment": "shift+flip"},
    "crop_0.7+shift": {"data.augment": "crop+shift", "data.crop_scale": (0.7, 1.0)},
    "lr_quarter": {"optim.base_lr": 1e-3},
    "weight_decay_0.5": {"optim.weight_decay": 0.5},
}


def _table(results: dict) -> str:
  base = np.mean(results["recipe"]["validation"])
  lines = ["| variant | changes | validation per seed | mean | against the recipe |",
           "|---|---|---|---|---|"]
  for name, row in results.items():
    mean = np.mean(row["validation"])
    changes = ", ".join(f"`{k}={v}`" for k, v in VARIANTS[name].items()) or "none"
    per_seed = ", ".join(f"{v:.3f}" for v in row["validation"])
    lines.append(f"| {name} | {changes} | {per_seed} | {mean:.3f} | {mean - base:+.3f} |")
  return "\n".join(lines)


def main(argv):
  del argv
  study_dir = pathlib.Path(_STUDY.value).absolute()
  names = _VARIANTS.value or list(VARIANTS)
  unknown = sorted(set(names) - set(VARIANTS))
  if unknown:
    raise app.UsageError(f"--variants: unknown {', '.join(unknown)}; known: "
                         f"{', '.join(VARIANTS)}.")
  names = ["recipe", *[n for n in names if n != "recipe"]]  # the reference, always
  settings = dict(model="cnn_s", data="animal_mnist", quick=False, validation=0.1,
                  manual_dir="", curve_points=10, pretrain_epochs=None, timings={})
  images = study._training_images(settings, [FRACTION])
  results = {}
  for name in names:
    results[name] = {"validation": [], "best_validation": [], "seconds": []}
    for seed in range(_SEEDS.value):
      config = study._adaptation_config("simclr_finetune", FRACTION, seed,
                                        {"simclr": study_dir / "pretrain_simclr"}, settings)
      config = sweep.apply_overrides(config, VARIANTS[name])
      config.batch_size = label_fractions.batch_size_for(config.batch_size, images[FRACTION])
      run = study._run(config, study_dir / "recipe_probe_few_labels" / f"{name}_seed{seed}",
                       images[FRACTION], settings)
      results[name]["validation"].append(run["validation"])
      results[name]["best_validation"].append(max(v for _, v in run["curve"]))
      results[name]["seconds"].append(run.get("seconds", 0.0))
      print(name, seed, run["validation"], flush=True)
  out = pathlib.Path(_OUT.value)
  (out / "recipe_probe_few_labels.json").write_text(json.dumps(results, indent=1) + "\n")
  (out / "recipe_probe_few_labels.md").write_text(
      "# Recipe probe: fine-tuning a SimCLR `cnn_s` on 1% of animal_mnist (validation only)\n\n"
      f"Command: `python -m experiments.recipe_searches.recipe_probe_few_labels` "
      f"({_SEEDS.value} seeds, each its own 70-image labelled subset; the 800-image validation "
      "holdout of every study).\n\n" + _table(results) + "\n")


if __name__ == "__main__":
  app.run(main)
