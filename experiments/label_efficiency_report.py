"""The label-efficiency study's outputs: a markdown table with the reference baselines beside and
the claims checked, a CSV of every run, the accuracy plot and the validation learning curves.
Kept apart from the study's runner so each file has one job."""

import csv
import pathlib

import numpy as np

from experiments import curves as curve_stats

PRETRAINED_FINETUNES = ("mae_finetune", "simclr_finetune", "simclr_proj_finetune")
BASELINE_METHODS = ("knn_pixels", "logreg_pixels", "cnn")


def _cell(values) -> str:
  return f"{np.mean(values):.3f} ± {np.std(values):.3f}" if len(values) else "—"


def _tests(runs: list[dict]) -> list[float]:
  return [r["test"] for r in runs]


def read_baselines(path: pathlib.Path) -> dict:
  """`{method: {fraction: [test accuracy per seed]}}` from experiments/baselines.py's CSV, or
  {} when it has not been run."""
  if not path.exists():
    return {}
  table = {}
  with path.open() as f:
    for row in csv.DictReader(f):
      table.setdefault(row["method"], {}).setdefault(row["fraction"], []).append(
          float(row["accuracy"]))
  return table


def claims(runs: dict, teachers: dict, baselines: dict) -> list[str]:
  """The study's claims, per fraction, with the numbers either way.

  Pre-training helps when the best pre-trained fine-tune's mean beats scratch's mean by more
  than the larger of the two seed spreads (standard deviations); fine-tuning SimCLR from its
  projection head's first layer (SimCLRv2) helps when it beats fine-tuning from the encoder the
  same way. Distillation holds when the
  student's mean is not below its teacher's. Every method must beat 1-NN on raw pixels; on
  100% labels fine-tuning must not lose to the linear probe (as in MAE).
  """
  lines = []
  fractions = list(next(iter(runs.values())))
  for fraction in fractions:
    mean = {m: np.mean(_tests(runs[m][fraction])) for m in runs if runs[m][fraction]}
    finetunes = [m for m in PRETRAINED_FINETUNES if m in mean]
    if "scratch" in mean and finetunes:
      best = max(finetunes, key=mean.get)
      spread = max(np.std(_tests(runs[best][fraction])), np.std(_tests(runs["scratch"][fraction])))
      margin = mean[best] - mean["scratch"]
      verdict = "holds" if margin > spread else "does NOT hold"
      lines.append(f"- {fraction}: pre-training + fine-tuning ({best}) minus scratch = "
                   f"{margin:+.3f}, seed spread {spread:.3f}: pre-training helps — {verdict}.")
    elif "scratch" in runs and finetunes:
      lines.append(f"- {fraction}: pre-training helps — not tested: scratch was not run at "
                   f"{fraction} (--skip).")
    if "simclr_finetune" in mean and "simclr_proj_finetune" in mean:
      spread = max(np.std(_tests(runs[m][fraction]))
                   for m in ("simclr_finetune", "simclr_proj_finetune"))
      margin = mean["simclr_proj_finetune"] - mean["simclr_finetune"]
      verdict = "holds" if margin > spread else "does NOT hold"
      lines.append(f"- {fraction}: SimCLR fine-tuned from the projection head's first layer "
                   f"minus from the encoder = {margin:+.3f}, seed spread {spread:.3f}: "
                   f"SimCLRv2's choice helps — {verdict}.")
    if fraction in teachers and "distill" in mean:
      teacher = teachers[fraction]
      per_seed = np.subtract(_tests(runs["distill"][fraction]), _tests(runs[teacher][fraction]))
      verdict = "holds" if per_seed.mean() >= 0 else "does NOT hold"
      lines.append(f"- {fraction}: distill minus its teacher ({teacher}) = {per_seed.mean():+.3f} "
                   f"(per seed {', '.join(f'{d:+.3f}' for d in per_seed)}): no loss — {verdict}.")
    knn = baselines.get("knn_pixels", {}).get(fraction)
    if knn:
      losers = [m for m in mean if mean[m] <= np.mean(knn)]
      lines.append(f"- {fraction}: every method beats 1-NN on pixels ({np.mean(knn):.3f}) — " +
                   ("holds." if not losers else f"does NOT hold for {', '.join(losers)}."))
    if fraction == "100%" and "mae_probe" in mean and finetunes:
      best = max(finetunes, key=mean.get)
      verdict = "holds" if mean[best] >= mean["mae_probe"] else "does NOT hold"
      lines.append(f"- 100%: fine-tuning ({best}, {mean[best]:.3f}) does not lose to the linear "
                   f"probe ({mean['mae_probe']:.3f}) — {verdict}.")
  return lines


def _curve_rows(runs: dict) -> list[str]:
  rows = ["| method | fraction | steps | validation curve (mean over seeds) |", "|---|---|---|---|"]
  for method, by_fraction in runs.items():
    for fraction, seeds in by_fraction.items():
      if seeds:
        rows.append(f"| {method} | {fraction} | {seeds[0]['steps']} | "
                    f"{curve_stats.flatness([r['curve'] for r in seeds])} |")
  return rows


def data_suffix(settings: dict) -> str:
  """`[_quick][_<data>]`: what names the baselines' files of a study's data."""
  return (("_quick" if settings["quick"] else "") +
          ("" if settings["data"] == "animal_mnist" else f"_{settings['data']}"))


def study_suffix(settings: dict) -> str:
  """`[_quick][_<data>][_<model>][_aug-<augment>][_<dtype>]`: a study's own files and runs
  folder; the model is named when it is not the default `mini` (a CNN study must not overwrite
  the ViT's), the augmentation and compute dtype when `--augment` and `--dtype` set them."""
  model = "" if settings["quick"] or settings["model"] == "mini" else f"_{settings['model']}"
  augment = settings.get("augment", "")
  dtype = settings.get("dtype", "")
  return (data_suffix(settings) + model + (f"_aug-{augment.replace('+', '-')}" if augment else "")
          + (f"_{dtype}" if dtype else ""))


def other_student(settings: dict) -> str:
  """The distillation student's model when it is not the study's (`--distill_student`), else
  ""."""
  student = settings.get("distill_student") or settings["model"]
  return "" if student == settings["model"] else student


def report_suffix(settings: dict) -> str:
  """`study_suffix`, plus `_distill_<student>` for a student of another model and
  `_ensemble<K>` for a teacher ensemble: such a report must not overwrite the plain one (the
  runs folder is shared: the teachers are the same runs)."""
  student = other_student(settings)
  ensemble = settings.get("teacher_ensemble", 1)
  return (study_suffix(settings) + (f"_distill_{student}" if student else "") +
          (f"_ensemble{ensemble}" if ensemble > 1 else ""))


def teachers_line(teachers: dict, settings: dict) -> str:
  """Which method taught the student at each fraction, and the ensemble when there is one
  (with its extra members' mean test accuracy)."""
  ensemble = settings.get("teacher_ensemble", 1)
  members = settings.get("ensemble_members", {})
  named = []
  for fraction, teacher in teachers.items():
    text = f"{fraction}: {teacher}"
    if ensemble > 1:
      tests = _tests(members.get(fraction, []))
      text += (f" (an ensemble of {ensemble} fine-tunes per seed on that seed's labels; the "
               f"{len(tests)} extra members' mean test accuracy "
               f"{np.mean(tests) if tests else float('nan'):.3f})")
    named.append(text)
  return ("Distillation teachers (best validation accuracy per fraction): " +
          (", ".join(named) or "none") + ".")


def write(runs: dict, teachers: dict, images: dict, settings: dict, out: pathlib.Path) -> None:
  """`<out>/label_efficiency<report_suffix>.{md,csv,png}` and `..._curves.png`."""
  out.mkdir(parents=True, exist_ok=True)
  stem = out / f"label_efficiency{report_suffix(settings)}"
  baselines = read_baselines(out / f"baselines{data_suffix(settings)}.csv")
  fractions = [f for f in images if f != "all"]
  seeds = max(len(s) for by_fraction in runs.values() for s in by_fraction.values())
  timings = settings.get("timings", {})
  lines = [f"# Label efficiency on {settings['data']} (top-1 test accuracy)", "",
           f"Command: `{settings['command']}`", "",
           f"Model: `{settings['model']}`{' (quick: its stand-in)' if settings['quick'] else ''} "
           + (f"for every run but distillation's student, a `{other_student(settings)}` "
              "started at random; " if other_student(settings) else "for every run; ") +
           f"{seeds} seed(s) per cell, mean ± standard deviation over seeds. "
           f"{settings['validation']:.0%} of the training split is held out for validation in "
           "every run (pre-training included); test is read once, at the end of each run.", "",
           "| method | " + " | ".join(fractions) + " |", "|---|" + "---|" * len(fractions)]
  lines += [f"| {m} | " + " | ".join(_cell(_tests(runs[m][f])) for f in fractions) + " |"
            for m in runs]
  lines += [f"| *baseline:* {m} | " + " | ".join(_cell(baselines[m].get(f, [])) for f in fractions)
            + " |" for m in BASELINE_METHODS if m in baselines]
  if not baselines:
    lines += ["", f"(No baselines: run `python -m experiments.baselines` on {settings['data']} "
              "to print them beside.)"]
  lines += ["", "Labelled images per fraction: " +
            ", ".join(f"{f}: {images[f]}" for f in fractions) +
            f"; distillation and pre-training see all {images['all']} training images.",
            teachers_line(teachers, settings), "",
            "## The claims", "", *claims(runs, teachers, baselines), "",
            "## Budgets and learning curves", "",
            f"Validation accuracy on the holdout, {settings['curve_points']} points per run: "
            f"`{stem.name}_curves.png`. A change near 0 over the last third means the run "
            "ended on a flat curve.", "", *_curve_rows(runs)]
  if settings.get("skipped"):
    lines += ["", "Not run (`--skip`, to fit the time budget): " +
              ", ".join(settings["skipped"]) + "."]
  if timings:
    lines += ["", "Wall clock: " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in timings.items())
              + " (0 for runs already complete)."]
  stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
  with stem.with_suffix(".csv").open("w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["method", "fraction", "labelled", "seed", "accuracy", "validation", "steps"])
    for m, by_fraction in runs.items():
      for fraction, seeds in by_fraction.items():
        writer.writerows([m, fraction, images[fraction], s, r["test"], r["validation"],
                          r["steps"]] for s, r in enumerate(seeds))
  _plot(runs, baselines, fractions, settings["data"], stem.with_suffix(".png"))
  _plot_curves(runs, settings["data"], out / f"{stem.name}_curves.png")
  print("\n".join(lines))


def _plot(runs: dict, baselines: dict, fractions: list[str], data: str,
          path: pathlib.Path) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(6.5, 4.2))
  xs = np.arange(len(fractions))
  for i, (method, by_fraction) in enumerate(runs.items()):
    kept = [j for j, f in enumerate(fractions) if by_fraction[f]]
    means = [np.mean(_tests(by_fraction[fractions[j]])) for j in kept]
    stds = [np.std(_tests(by_fraction[fractions[j]])) for j in kept]
    # A small horizontal offset per method keeps overlapping error bars readable.
    ax.errorbar(xs[kept] + 0.04 * (i - 2), means, yerr=stds, marker="o", capsize=3,
                label=method)
  for method in BASELINE_METHODS:
    if method in baselines:
      ax.plot(xs, [np.mean(baselines[method].get(f, [np.nan])) for f in fractions], ls="--",
              color="grey", marker="x", alpha=0.7)
      ax.annotate(method, (xs[-1], np.mean(baselines[method].get(fractions[-1], [np.nan]))),
                  fontsize=7, color="grey", xytext=(4, 0), textcoords="offset points")
  ax.set_xticks(xs, fractions)
  ax.set_xlabel("labelled fraction of the training split")
  ax.set_ylabel("top-1 test accuracy")
  ax.set_title(f"{data}: label efficiency (mean ± std over seeds; grey: baselines)")
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def _plot_curves(runs: dict, data: str, path: pathlib.Path) -> None:
  fractions = list(next(iter(runs.values())))
  panels = {}
  for fraction in fractions:
    panels[f"{data}, {fraction} labels"] = {
        method: list(zip(*curve_stats.mean_curve([r["curve"] for r in by_fraction[fraction]])))
        for method, by_fraction in runs.items() if by_fraction[fraction]}
  curve_stats.plot_panels(panels, path, "validation accuracy (holdout)")
