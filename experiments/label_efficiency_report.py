"""The label-efficiency study's outputs: a markdown table with the claims checked, a CSV of every
run and a plot. Kept apart from the study's runner so each file has one job."""

import csv
import pathlib

import numpy as np

PRETRAINED_FINETUNES = ("mae_finetune", "simclr_finetune")
def _cell(values) -> str:
  return f"{np.mean(values):.3f} ± {np.std(values):.3f}"


def claims(results: dict, teachers: dict) -> list[str]:
  """The issue's two claims, per fraction, with the numbers either way.

  Pre-training helps when the best pre-trained fine-tune's mean beats scratch's mean by more
  than the larger of the two seed spreads (standard deviations). Distillation holds when the
  student's mean is not below its teacher's mean (same size, so the teacher is the baseline).
  """
  lines = []
  for fraction in results["scratch"]:
    scratch = results["scratch"][fraction]
    best = max(PRETRAINED_FINETUNES, key=lambda m: np.mean(results[m][fraction]))
    margin = np.mean(results[best][fraction]) - np.mean(scratch)
    spread = max(np.std(results[best][fraction]), np.std(scratch))
    verdict = "holds" if margin > spread else "does NOT hold"
    lines.append(f"- {fraction}: pre-training + fine-tuning ({best}) minus scratch = "
                 f"{margin:+.3f}, seed spread {spread:.3f}: the claim {verdict}.")
    teacher = teachers[fraction]
    gap = np.mean(results["distill"][fraction]) - np.mean(results[teacher][fraction])
    per_seed = np.subtract(results["distill"][fraction], results[teacher][fraction])
    verdict = "holds" if gap >= 0 else "does NOT hold"
    lines.append(f"  distill minus its teacher ({teacher}) = {gap:+.3f} (per seed "
                 f"{', '.join(f'{d:+.3f}' for d in per_seed)}): no loss {verdict}.")
  return lines


def write(results: dict, teachers: dict, counts: dict, settings: dict, out: pathlib.Path) -> None:
  """`<out>/label_efficiency[_quick][_mnist].{md,csv,png}`."""
  out.mkdir(parents=True, exist_ok=True)
  suffix = ("_quick" if settings["quick"] else "") + \
      ("" if settings["data"] == "animal_mnist" else f"_{settings['data']}")
  stem = out / f"label_efficiency{suffix}"
  fractions = list(counts)
  methods = list(results)
  seeds = len(results["scratch"][fractions[0]])
  timings = settings.get("timings", {})
  lines = [f"# Label efficiency on {settings['data']} (top-1 test accuracy)", "",
           f"Command: `{settings['command']}`", "",
           f"Model: `{'mu' if settings['quick'] else settings['model']}` ViT for every run; "
           f"{seeds} seed(s) per cell, mean ± standard deviation over seeds.", "",
           "| method | " + " | ".join(fractions) + " |", "|---|" + "---|" * len(fractions)]
  lines += [f"| {m} | " + " | ".join(_cell(results[m][f]) for f in fractions) + " |"
            for m in methods]
  lines += ["", "Labelled images per fraction: " +
            ", ".join(f"{f}: {n}" for f, n in counts.items()) + ".",
            "Distillation teachers (best method per fraction): " +
            ", ".join(f"{f}: {t}" for f, t in teachers.items()) + ".", "",
            "## The claims", "", *claims(results, teachers)]
  if timings:
    lines += ["", "Wall clock: " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in timings.items())
              + " (pre-training times are 0 when the runs were already complete)."]
  stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
  with stem.with_suffix(".csv").open("w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["method", "fraction", "labelled", "seed", "accuracy"])
    for m in methods:
      for fraction, values in results[m].items():
        writer.writerows([m, fraction, counts[fraction], s, v] for s, v in enumerate(values))
  _plot(results, fractions, settings["data"], stem.with_suffix(".png"))
  print("\n".join(lines))


def _plot(results: dict, fractions: list[str], data: str, path: pathlib.Path) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(6.5, 4.2))
  xs = np.arange(len(fractions))
  for i, (method, by_fraction) in enumerate(results.items()):
    means = [np.mean(by_fraction[f]) for f in fractions]
    stds = [np.std(by_fraction[f]) for f in fractions]
    # A small horizontal offset per method keeps overlapping error bars readable.
    ax.errorbar(xs + 0.04 * (i - 2), means, yerr=stds, marker="o", capsize=3, label=method)
  ax.set_xticks(xs, fractions)
  ax.set_xlabel("labelled fraction of the training split")
  ax.set_ylabel("top-1 test accuracy")
  ax.set_title(f"{data}: label efficiency (mean ± std over seeds)")
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
