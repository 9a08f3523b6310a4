"""Label-efficiency study: top-1 test accuracy against label fraction.

    python experiments/label_efficiency.py                 # animal_mnist, 50 min on 2 CPUs
    python experiments/label_efficiency.py --data=mnist --manual_dir=DIR   # MNIST's IDX files
    python experiments/label_efficiency.py --quick         # a minutes-long smoke run (tests)

Every run uses one model size (`--model`, default `mini`). Methods, at every fraction and seed:
  scratch          the ViT trained on the labelled subset only
  mae_finetune     MAE pre-training (every training image, no labels) + fine-tuning
  mae_probe        MAE pre-training + linear probe (frozen trunk, BatchNorm + linear head)
  simclr_finetune  SimCLR pre-training + fine-tuning
  distill          SimCLRv2's step 3: the best of the above at that fraction (by mean accuracy)
                   is the teacher; a student of the same size, starting from the teacher's
                   pre-trained encoder, learns the teacher's predictions on every training image
The pre-training runs once (seed 0); the seeds vary the labelled subset, the head's
initialisation and the data order. Adaptation runs get `--epochs` passes over their labelled
subset, clipped to [--min_steps, --max_steps] steps, so small fractions are not under-trained
and the study keeps to its hour; distillation runs get `--distill_steps`.
Writes `<out>/label_efficiency[_<data>].{md,csv,png}`: mean and standard deviation over seeds.
Finished runs are skipped on a rerun (their `result.json`); a preempted study resumes.
"""

import json
import math
import pathlib
import sys
import time

import numpy as np
from absl import app, flags

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from experiments import label_efficiency_report as report  # noqa: E402
from experiments import smoke, study_cli  # noqa: E402
from mll_jax import config_files, sweep, train  # noqa: E402
from mll_jax.data import label_fractions  # noqa: E402

_QUICK = flags.DEFINE_bool("quick", False, "The `mu` model and a few steps: a smoke test.")
_DATA = flags.DEFINE_enum("data", "animal_mnist", ["animal_mnist", "mnist"], "Data set.")
_MANUAL_DIR = flags.DEFINE_string("manual_dir", "", "Folder of MNIST's IDX files (--data=mnist).")
_MODEL = flags.DEFINE_string("model", "mini", "Model size of every run (configs/finetune.py).")
_WORKDIR = flags.DEFINE_string("study_dir", None, "Runs folder (default runs/label_efficiency_*).")
_OUT = flags.DEFINE_string("out", str(REPO / "experiments" / "results"), "Results folder.")
_SEEDS = flags.DEFINE_integer("seeds", None, "Seeds per point (default 3; quick 1).")
_FRACTIONS = flags.DEFINE_list("fractions", None, "Label fractions (default 1%,5%,10%,100%).")
_EPOCHS = flags.DEFINE_float("epochs", 50.0, "Passes over the labelled subset per adaptation.")
_MIN_STEPS = flags.DEFINE_integer("min_steps", 150, "Fewest steps of an adaptation run.")
_MAX_STEPS = flags.DEFINE_integer("max_steps", 400, "Most steps of an adaptation run.")
_DISTILL_STEPS = flags.DEFINE_integer("distill_steps", 500, "Steps of each distillation run.")
_PRETRAIN_EPOCHS = flags.DEFINE_float("pretrain_epochs", None,
                                      "Epochs of MAE and SimCLR pre-training (default: the "
                                      "configs' 15 on animal_mnist, 2 on MNIST's 60,000).")

ADAPTATIONS = {  # method -> (config file, pre-training it starts from)
    "scratch": ("finetune", None),
    "mae_finetune": ("finetune", "mae"),
    "mae_probe": ("linear_probe", "mae"),
    "simclr_finetune": ("finetune", "simclr"),
}
METRIC = "classification/accuracy"
CONFIG_DATA = {"animal_mnist": "animal_mnist", "mnist": "mnist"}


def _config(name: str, settings: dict, **overrides):
  """`configs/<name>.py` for the study's data and model, with `overrides` applied."""
  quick = settings["quick"]
  model = "mu" if quick else settings["model"]
  config = config_files.load(REPO / "configs" / f"{name}.py").get_config(
      f"{model},{settings['data']}")
  if settings["manual_dir"]:
    overrides = {"data.manual_dir": settings["manual_dir"], **overrides}
  if quick:
    overrides = {**smoke.shrink(config), **overrides}
  return sweep.apply_overrides(config, overrides)


def adaptation_steps(labelled: int, batch_size: int, settings: dict) -> int:
  """`epochs` passes over `labelled` images, clipped to the study's step range."""
  steps = math.ceil(settings["epochs"] * labelled / batch_size)
  return min(max(steps, settings["min_steps"]), settings["max_steps"])


def _duration(config, steps: int, settings: dict) -> dict:
  if settings["quick"]:
    return {}
  # Warm-up 10% of the run; evaluations only at its end (they cost time, not accuracy).
  return {"total_steps": steps, "warmup_steps": max(steps // 10, 1),
          "evals.classification.log_steps": steps, "checkpoint.every_steps": 200}


def _run(config, workdir: pathlib.Path) -> float:
  """Trains (unless finished before) and returns the final test accuracy."""
  result = workdir / "result.json"
  if not result.exists():
    train.run(config, workdir)
    result.write_text(json.dumps({METRIC: sweep.final_metrics(workdir)[METRIC]}))
  return json.loads(result.read_text())[METRIC]


def _labelled_counts(settings: dict, fractions: list[str]) -> dict:
  """Size of each fraction's labelled subset (seed 0; every seed gives the same size)."""
  from mll_jax.data import sources
  config = _config("finetune", settings)
  builder = sources.get_builder(config.data.name, config.data.data_dir or None,
                                config.data.manual_dir or None)
  labels = label_fractions.split_labels(sources.data_source(builder, "train"))
  names = sources.info(builder).class_names
  return {f: len(label_fractions.split_labelled(labels, f, 0, names)[0]) for f in fractions}


def pretrain(study_dir: pathlib.Path, settings: dict) -> dict:
  """MAE and SimCLR pre-training runs (resumed, or noted complete); returns their workdirs."""
  runs = {}
  for name in ("mae", "simclr"):
    overrides = {}
    if settings["pretrain_epochs"] and not settings["quick"]:
      overrides = {"num_epochs": settings["pretrain_epochs"]}
    runs[name] = study_dir / f"pretrain_{name}"
    started = time.time()
    train.run(_config(name, settings, **overrides), runs[name])
    settings["timings"][f"pretrain_{name}"] = time.time() - started
  return runs


def run_study(study_dir: pathlib.Path, out: pathlib.Path, settings: dict, seeds: int,
              fractions: list[str]) -> dict:
  """Runs every point; returns `{method: {fraction: [accuracy per seed]}}` and writes tables."""
  settings.setdefault("timings", {})
  started = time.time()
  pretrained = pretrain(study_dir, settings)
  counts = _labelled_counts(settings, fractions)
  results = {m: {f: [] for f in fractions} for m in [*ADAPTATIONS, "distill"]}
  teachers = {}
  for fraction in fractions:
    tag = fraction.replace("%", "pct").replace("=", "")
    for seed in range(seeds):
      for method, (config_name, start) in ADAPTATIONS.items():
        config = _config(config_name, settings)
        steps = adaptation_steps(counts[fraction], config.batch_size, settings)
        config = sweep.apply_overrides(config, {
            "data.labels": fraction, "seed": seed,
            "init_from": str(pretrained[start]) if start else "",
            **_duration(config, steps, settings)})
        results[method][fraction].append(_run(config, study_dir / f"{method}_{tag}_seed{seed}"))
    teachers[fraction] = max(ADAPTATIONS, key=lambda m: np.mean(results[m][fraction]))
    start = ADAPTATIONS[teachers[fraction]][1]
    for seed in range(seeds):
      config = _config("distill", settings)
      config = sweep.apply_overrides(config, {
          "data.labels": fraction, "seed": seed, "teacher.variant": config.model.variant,
          # A linear-probe teacher has a BatchNorm before its head.
          "teacher.head_norm": "batchnorm" if teachers[fraction] == "mae_probe" else "",
          "init_from": str(study_dir / f"{teachers[fraction]}_{tag}_seed{seed}"),
          "student_init_from": str(pretrained[start]) if start else "",
          **_duration(config, settings["distill_steps"], settings)})
      results["distill"][fraction].append(
          _run(config, study_dir / f"distill_{tag}_seed{seed}"))
  settings["timings"]["total"] = time.time() - started
  report.write(results, teachers, counts, settings, out)
  return results


def main(argv):
  del argv
  train.setup_runtime()
  quick, data = _QUICK.value, _DATA.value
  study_cli.require_mnist_files(data, _MANUAL_DIR.value)
  settings = {"quick": quick, "data": CONFIG_DATA[data], "model": _MODEL.value,
              "manual_dir": _MANUAL_DIR.value, "epochs": _EPOCHS.value,
              "min_steps": _MIN_STEPS.value, "max_steps": _MAX_STEPS.value,
              "distill_steps": _DISTILL_STEPS.value,
              "pretrain_epochs": _PRETRAIN_EPOCHS.value or (2.0 if data == "mnist" else None),
              "command": study_cli.command_line(sys.argv)}
  suffix = ("_quick" if quick else "") + ("" if data == "animal_mnist" else f"_{data}")
  study_dir = pathlib.Path(_WORKDIR.value or f"runs/label_efficiency{suffix}")
  run_study(study_dir.absolute(), pathlib.Path(_OUT.value), settings,
            seeds=_SEEDS.value or (1 if quick else 3),
            fractions=_FRACTIONS.value or (["10%"] if quick else ["1%", "5%", "10%", "100%"]))


if __name__ == "__main__":
  app.run(main)
