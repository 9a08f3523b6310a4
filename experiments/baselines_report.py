"""The baselines' outputs: a markdown table, a CSV of every run, and the CNN's validation
learning curves (one line per fraction, mean over seeds) as a PNG. Kept apart from the runner so
each file has one job."""

import csv
import pathlib

import numpy as np

from experiments import curves as curve_stats

def _cell(values) -> str:
  return f"{np.mean(values):.3f} ± {np.std(values):.3f}"


def write(results: dict, curves: dict, runs: dict, settings: dict, out: pathlib.Path) -> None:
  """`<out>/baselines[_quick][_<data>].{md,csv,png}`."""
  out.mkdir(parents=True, exist_ok=True)
  suffix = ("_quick" if settings["quick"] else "") + \
      ("" if settings["data"] == "animal_mnist" else f"_{settings['data']}")
  stem = out / f"baselines{suffix}"
  fractions = list(runs)
  seeds = len(results["cnn"][fractions[0]])
  lines = [f"# Reference baselines on {settings['data']} (top-1 test accuracy)", "",
           f"Command: `{settings['command']}`", "",
           f"{seeds} seed(s) per cell (the label subset, and the CNN's initialisation and data "
           f"order), mean ± standard deviation over seeds. {settings['validation']:.0%} of the "
           "training split is held out for validation first (the same images for every run); "
           "the labelled subsets are drawn from the rest, exactly as a study run with the same "
           "`data.labels`, `data.validation` and `seed` draws them.", "",
           "| method | " + " | ".join(fractions) + " |", "|---|" + "---|" * len(fractions)]
  lines += [f"| {m} | " + " | ".join(_cell(results[m][f]) for f in fractions) + " |"
            for m in results]
  lines += ["", "- knn_pixels: 1-nearest-neighbour on raw pixels. logreg_pixels: logistic "
            "regression on standardised pixels, scikit-learn's defaults (C = 1), nothing tuned.",
            "- cnn: `configs/finetune.py:cnn_s` (94k parameters) trained by mll_jax, AdamW, "
            "random shifts, no flips; test accuracy read once, at the end of training.", "",
            "| fraction | labelled images | CNN steps x batch | CNN validation curve (mean over "
            "seeds) |", "|---|---|---|---|"]
  lines += [f"| {f} | {r['labelled']} | {r['steps']} x {r['batch_size']} | "
            f"{curve_stats.flatness(curves[f])} |" for f, r in runs.items()]
  lines += ["", f"Learning curves: `{stem.name}.png`. Wall clock: {settings['seconds'] / 60:.1f} "
            "min (0 for runs already complete)."]
  stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
  with stem.with_suffix(".csv").open("w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["method", "fraction", "labelled", "seed", "accuracy"])
    for method, by_fraction in results.items():
      for fraction, values in by_fraction.items():
        writer.writerows([method, fraction, runs[fraction]["labelled"], s, v]
                         for s, v in enumerate(values))
  _plot(curves, settings["data"], stem.with_suffix(".png"))
  print("\n".join(lines))


def _plot(curves: dict, data: str, path: pathlib.Path) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(6.5, 4.2))
  for fraction, runs in curves.items():
    steps, accuracy = curve_stats.mean_curve(runs)
    ax.plot(steps, accuracy, marker=".", label=f"cnn, {fraction} labels")
  ax.set_xlabel("training step")
  ax.set_ylabel("validation accuracy (held-out part of train)")
  ax.set_title(f"{data}: reference CNN learning curves (mean over seeds)")
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
