"""Label-efficiency study: top-1 test accuracy against label fraction on animal_mnist.

    python experiments/label_efficiency.py            # the full study (about an hour, 2 CPUs)
    python experiments/label_efficiency.py --quick    # a minutes-long smoke run (the tests use it)

Methods, each fine-tuned for the same number of steps at every label fraction and seed:
  scratch          ViT trained on the labelled subset only
  mae_finetune     MAE pre-training (all training images, no labels) + fine-tuning
  mae_probe        MAE pre-training + linear probe (frozen trunk)
  simclr_finetune  SimCLR pre-training + fine-tuning
  distill          the best of the above at that fraction as teacher, distilled into a student
                   of the same size on every training image (SimCLRv2's step 3)
Writes `<out>/label_efficiency.{md,csv,png}`: mean and standard deviation over seeds.
Finished runs are skipped on a rerun (their `result.json`).
"""

import csv
import json
import os
import pathlib
import sys

import numpy as np
from absl import app, flags

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mll_jax import config_files, sweep, train  # noqa: E402

_QUICK = flags.DEFINE_bool("quick", False, "Tiny models and a few steps: a smoke test.")
_WORKDIR = flags.DEFINE_string("study_dir", None, "Runs folder (default runs/label_efficiency).")
_OUT = flags.DEFINE_string("out", str(REPO / "experiments" / "results"), "Results folder.")
_SEEDS = flags.DEFINE_integer("seeds", None, "Seeds per point (default 3; quick 1).")
_FRACTIONS = flags.DEFINE_list("fractions", None, "Label fractions (default 1%,5%,10%,100%).")
_STEPS = flags.DEFINE_integer("steps", None, "Steps of each adaptation run (default 400).")

ADAPTATIONS = {  # method -> (config file, pre-training it starts from)
    "scratch": ("finetune", None),
    "mae_finetune": ("finetune", "mae"),
    "mae_probe": ("linear_probe", "mae"),
    "simclr_finetune": ("finetune", "simclr"),
}
METRIC = "classification/accuracy"


def _config(name: str, quick: bool, **overrides):
  config = config_files.load(REPO / "configs" / f"{name}.py").get_config("mu" if quick else None)
  if quick:
    overrides = {"batch_size": 16, "total_steps": 3, "warmup_steps": 1, "log_steps": 3,
                 "checkpoint.every_steps": 3, **overrides}
    for evaluator in config.evals.values():
      for key, value in (("num_examples", 64), ("num_train_examples", 200),
                         ("num_test_examples", 64), ("batch_size", 32), ("seeds", 1)):
        if key in evaluator:
          evaluator[key] = value
    if "fewshot" in config.evals:
      config.evals.fewshot.shots = (2,)
  return sweep.apply_overrides(config, overrides)


def _run(config, workdir: pathlib.Path) -> float:
  """Trains (unless finished before) and returns the final test accuracy."""
  result = workdir / "result.json"
  if not result.exists():
    train.run(config, workdir)
    result.write_text(json.dumps({METRIC: sweep.final_metrics(workdir)[METRIC]}))
  return json.loads(result.read_text())[METRIC]


def run_study(study_dir: pathlib.Path, out: pathlib.Path, quick: bool, seeds: int,
              fractions: list[str], steps: int) -> dict:
  """Runs every point; returns `{method: {fraction: [accuracy per seed]}}` and writes tables."""
  pretrained = {}
  for name in ("mae", "simclr"):
    pretrained[name] = study_dir / f"pretrain_{name}"
    train.run(_config(name, quick), pretrained[name])  # resumes, or notes it is complete
  results = {m: {f: [] for f in fractions} for m in [*ADAPTATIONS, "distill"]}
  for fraction in fractions:
    tag = fraction.replace("%", "pct")
    for seed in range(seeds):
      for method, (config_name, start) in ADAPTATIONS.items():
        overrides = {"data.labels": fraction, "seed": seed, "init_from":
                     str(pretrained[start]) if start else ""}
        if not quick:
          overrides.update(total_steps=steps, warmup_steps=steps // 10)
        accuracy = _run(_config(config_name, quick, **overrides),
                        study_dir / f"{method}_{tag}_seed{seed}")
        results[method][fraction].append(accuracy)
    # Teacher: the method with the best mean accuracy at this fraction.
    best = max(ADAPTATIONS, key=lambda m: np.mean(results[m][fraction]))
    teacher_variant = "mu" if quick else "tiny"
    for seed in range(seeds):
      overrides = {"data.labels": fraction, "seed": seed, "model.variant": teacher_variant,
                   "teacher.variant": teacher_variant,
                   "init_from": str(study_dir / f"{best}_{tag}_seed{seed}")}
      if not quick:
        overrides.update(total_steps=steps, warmup_steps=steps // 10)
      results["distill"][fraction].append(
          _run(_config("distill", quick, **overrides), study_dir / f"distill_{tag}_seed{seed}"))
    results.setdefault("_teacher", {})[fraction] = best
  write_results(results, fractions, out, quick)
  return results


def write_results(results: dict, fractions: list[str], out: pathlib.Path, quick: bool) -> None:
  """Markdown table (mean ± std over seeds), CSV of every run, and the plot."""
  out.mkdir(parents=True, exist_ok=True)
  stem = out / ("label_efficiency_quick" if quick else "label_efficiency")
  methods = [m for m in results if not m.startswith("_")]
  args = [a for a in sys.argv[1:] if not a.startswith(("--out", "--study_dir", "--compilation"))]
  command = " ".join(["python experiments/label_efficiency.py", *args])
  lines = [f"# Label efficiency on animal_mnist (top-1 test accuracy)", "",
           f"Command: `{command}`", "",
           "| method | " + " | ".join(fractions) + " |", "|---|" + "---|" * len(fractions)]
  for m in methods:
    cells = [f"{np.mean(v):.3f} ± {np.std(v):.3f}" for v in results[m].values()]
    lines.append(f"| {m} | " + " | ".join(cells) + " |")
  teachers = ", ".join(f"{f}: {t}" for f, t in results.get("_teacher", {}).items())
  lines += ["", f"Distillation teachers (best method per fraction): {teachers}.",
            f"Seeds per cell: {len(next(iter(results[methods[0]].values())))}."]
  stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
  with stem.with_suffix(".csv").open("w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["method", "fraction", "seed", "accuracy"])
    for m in methods:
      for fraction, values in results[m].items():
        writer.writerows([m, fraction, s, v] for s, v in enumerate(values))
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(6, 4))
  xs = np.arange(len(fractions))
  for m in methods:
    means = [np.mean(v) for v in results[m].values()]
    stds = [np.std(v) for v in results[m].values()]
    ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label=m)
  ax.set_xticks(xs, fractions)
  ax.set_xlabel("labelled fraction of the training split")
  ax.set_ylabel("top-1 test accuracy")
  ax.set_title("animal_mnist: label efficiency")
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(stem.with_suffix(".png"), dpi=120)
  print("\n".join(lines))


def main(argv):
  del argv
  train.setup_runtime()
  quick = _QUICK.value
  study_dir = pathlib.Path(_WORKDIR.value or
                           ("runs/label_efficiency_quick" if quick else "runs/label_efficiency"))
  run_study(study_dir.absolute(), pathlib.Path(_OUT.value), quick,
            seeds=_SEEDS.value or (1 if quick else 3),
            fractions=_FRACTIONS.value or (["10%"] if quick else ["1%", "5%", "10%", "100%"]),
            steps=_STEPS.value or 400)


if __name__ == "__main__":
  app.run(main)
