"""Recipe probe, validation only: the fine-tuning recipe of a CNN pre-trained by SimCLR.

    python -m experiments.recipe_searches.recipe_probe_cnn [--probe_study_dir=runs/label_efficiency_cnn_s]

Reuses the SimCLR `cnn_s` of a `--model=cnn_s` label-efficiency study (`pretrain_simclr` in its
study folder; run that study first) and fine-tunes it on animal_mnist, seed 0, at 10% and 1%
of the labels, under the ViT's fine-tuning changes (half the from-scratch passes, layer-wise
decay 0.75) and the CNN's (the from-scratch passes, with and without the decay). Runs are
compared on the validation holdout (a run logs test once at its end; it is not used here). The
chosen recipe is `configs/finetune.py` `pretrained_overrides` for the convolutional family.
"""

import json
import pathlib

from absl import app, flags

REPO = pathlib.Path(__file__).resolve().parents[1]

if __name__ == "__main__":  # the process is set up (allocator, libtpu) before JAX loads
  from mll_jax import command
  command.start()

from experiments import label_efficiency as study  # noqa: E402
from configs import finetune  # noqa: E402
from mll_jax import sweep  # noqa: E402
from mll_jax.data import label_fractions  # noqa: E402

_STUDY = flags.DEFINE_string("probe_study_dir", "runs/label_efficiency_cnn_s",
                             "The cnn_s label-efficiency study (its pretrain_simclr run).")
_OUT = flags.DEFINE_string("probe_out", str(REPO / "experiments" / "results" /
                                            "recipe_probe_cnn.json"), "Results (JSON).")

FINETUNE = finetune
# name -> (the pre-trained budget, not the from-scratch one; layer-wise decay)
RECIPES = {"vit_changes": (True, 0.75), "scratch_budget": (False, 0.75),
           "scratch_budget_no_decay": (False, 1.0)}


def main(argv):
  del argv
  study_dir = pathlib.Path(_STUDY.value).absolute()
  settings = dict(model="cnn_s", data="animal_mnist", quick=False, validation=0.1,
                  manual_dir="", curve_points=10, pretrain_epochs=None, timings={})
  images = study._training_images(settings, ["1%", "10%"])
  results = {}
  for fraction in ("10%", "1%"):
    for name, (pretrained_budget, decay) in RECIPES.items():
      config = study._adaptation_config("simclr_finetune", fraction, 0,
                                        {"simclr": study_dir / "pretrain_simclr"}, settings)
      epochs = FINETUNE.budget_epochs("animal_mnist", fraction, pretrained=pretrained_budget)
      config = sweep.apply_overrides(config, {"num_epochs": epochs,
                                              "budget_sized_for.num_epochs": epochs,
                                              "optim.layer_decay": decay})
      config.batch_size = label_fractions.batch_size_for(config.batch_size, images[fraction])
      run = study._run(config, study_dir / "recipe_probe" / f"{name}_{study._tag(fraction)}",
                       images[fraction], settings)
      results[f"{fraction} {name}"] = {
          "passes": epochs, "layer_decay": decay, "steps": run["steps"],
          "validation": run["validation"], "best_validation": max(v for _, v in run["curve"])}
      print(fraction, name, results[f"{fraction} {name}"], flush=True)
  pathlib.Path(_OUT.value).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
  app.run(main)
