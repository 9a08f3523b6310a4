"""The hub-scaling study's outputs: markdown tables, a CSV of every evaluation and a plot."""

import csv
import json
import pathlib

import numpy as np

from experiments import curves, hub_experts


def _mean_std(values) -> str:
  values = [v for v in values if v == v]  # drop NaN
  return f"{np.mean(values):.3f} ± {np.std(values):.3f}" if values else "-"


def scaling_table(rows: list[dict]) -> tuple[list[str], dict]:
  """Per size and method: accuracy averaged over tasks per ordering, then mean ± std over
  orderings."""
  curves = {}
  for method in sorted({r["method"] for r in rows}):
    for size in sorted({r["size"] for r in rows}):
      per_ordering = {}
      for r in rows:
        if r["method"] == method and r["size"] == size:
          per_ordering.setdefault(r["ordering"], []).append(r["accuracy"])
      curves.setdefault(method, {})[size] = [np.mean(v) for v in per_ordering.values()]
  sizes = sorted({r["size"] for r in rows})
  lines = ["| method | " + " | ".join(f"{s} models" for s in sizes) + " |",
           "|---|" + "---|" * len(sizes)]
  for method, by_size in curves.items():
    lines.append(f"| {method} | " + " | ".join(_mean_std(by_size[s]) for s in sizes) + " |")
  return lines, curves


def per_dataset_lines(results: dict) -> list[str]:
  """Per data set, each method's mean accuracy over its tasks at the full hub, and CHCO's gap
  to the oracle and to the generalist (where they were trained)."""
  data_of = {",".join(classes): data for data, classes in results["tasks"]}
  methods = list(dict.fromkeys(r["method"] for r in results["baselines"]))
  gaps = [m for m in ("oracle", "generalist") if m in methods]
  lines = ["| data set | " + " | ".join(methods) + " | " +
           "".join(f"CHCO − {m} | " for m in gaps),
           "|---|" + "---|" * (len(methods) + len(gaps))]
  for data in dict.fromkeys(data_of.values()):
    mean = {m: np.mean([r["accuracy"] for r in results["baselines"]
                        if r["method"] == m and data_of[r["task"]] == data]) for m in methods}
    lines.append(f"| {data} | " + " | ".join(f"{mean[m]:.3f}" for m in methods) + " | " +
                 "".join(f"{mean['chco'] - mean[m]:+.3f} | " for m in gaps))
  return lines


def trained_lines(trained: dict) -> list[str]:
  """The generalists' and oracles' own test accuracy (all their classes) and their curves."""
  if not trained:
    return []
  lines = ["| run | data set | classes | test accuracy (its classes) | steps | validation "
           "curve |", "|---|---|---|---|---|---|"]
  for name, run in trained.items():
    flat = curves.flatness([run["curve"]]) if run["curve"] else "no curve"
    lines.append(f"| {name} | {run['data']} | {run['classes']} | {run['test']:.3f} | "
                 f"{run['steps']} | {flat} |")
  return ["## The trained references (generalists and oracles)", "",
          f"Each holds out {hub_experts.VALIDATION:.0%} of its training images; its validation "
          f"accuracy there, {hub_experts.CURVE_POINTS} points per run (`hub_scaling_curves.png`;"
          " a change near 0 over the last third: a flat end).", "", *lines, ""]


def plot_trained_curves(trained: dict, path: pathlib.Path) -> None:
  """A PNG of the references' validation curves, one panel per data set (none without any)."""
  panels = {}
  for name, run in trained.items():
    if run["curve"]:
      panels.setdefault(f"{run['data']} references", {})[name] = run["curve"]
  curves.plot_panels(panels, path, "validation accuracy (holdout of its classes)")


def comparison_lines(results: dict, other: dict, other_name: str) -> list[str]:
  """This hub against another hub's study on the same held-out tasks (e.g. the mixed hub
  against the ViT-only one of the same size): CHCO's accuracy and cost over lambda, paired by
  task, and CHCO against hub size. Refused (ValueError) when the tasks differ, since the two
  would then not be measured on the same images."""
  # As JSON both: a study's own tasks are tuples of numpy strings until it is saved.
  if json.loads(json.dumps(results["tasks"])) != json.loads(json.dumps(other["tasks"])):
    raise ValueError(f"{other_name} was run on other tasks than this study ({other['tasks']} "
                     f"vs {results['tasks']}): compare studies of the same --seed and --tasks.")

  def by_task(rows, **match):
    return {r["task"]: r for r in rows if all(r.get(k) == v for k, v in match.items())}

  lines = [f"## Against `{other_name}` (same tasks, same test images)", "",
           "CHCO over lambda on the full hubs; the difference is paired by task (this hub "
           "minus the other, mean ± std over tasks).", "",
           "| lambda | accuracy, this hub | accuracy, other | difference | MFLOPs/image, this "
           "hub | MFLOPs/image, other |", "|---|---|---|---|---|---|"]
  for lam in sorted({r["lam"] for r in results["lambda"]} & {r["lam"] for r in other["lambda"]}):
    mine, theirs = by_task(results["lambda"], lam=lam), by_task(other["lambda"], lam=lam)
    tasks = sorted(mine.keys() & theirs.keys())
    lines.append(
        f"| {lam:g} | {_mean_std([mine[t]['accuracy'] for t in tasks])} | "
        f"{_mean_std([theirs[t]['accuracy'] for t in tasks])} | "
        f"{_mean_std([mine[t]['accuracy'] - theirs[t]['accuracy'] for t in tasks])} | "
        f"{_mean_std([mine[t]['mflops'] for t in tasks])} | "
        f"{_mean_std([theirs[t]['mflops'] for t in tasks])} |")
  sizes = sorted({r["size"] for r in results["scaling"]} & {r["size"] for r in other["scaling"]})
  lines += ["", "CHCO against hub size (mean over orderings and tasks; the orderings are drawn "
            "with the same seed over each hub's own models):", "",
            "| hub | " + " | ".join(f"{s} models" for s in sizes) + " |",
            "|---|" + "---|" * len(sizes)]
  for name, study in (("this hub", results), (other_name, other)):
    cells = [np.mean([r["accuracy"] for r in study["scaling"]
                      if r["method"] == "chco" and r["size"] == s]) for s in sizes]
    lines.append(f"| {name} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")
  return lines + [""]


def write(results: dict, settings: dict, stem: pathlib.Path) -> None:
  """`<stem>.md`, `.csv`, `.png` and the references' `<stem>_curves.png`."""
  scaling_lines, by_size = scaling_table(results["scaling"])
  methods = list(dict.fromkeys(r["method"] for r in results["baselines"]))
  base = ["| method | accuracy (mean ± std over tasks) | models | MFLOPs/image |",
          "|---|---|---|---|"]
  for m in methods:
    rows = [r for r in results["baselines"] if r["method"] == m]
    base.append(f"| {m} | {_mean_std([r['accuracy'] for r in rows])} | "
                f"{np.mean([r['models'] for r in rows]):.1f} | "
                f"{_mean_std([r['mflops'] for r in rows])} |")
  lams = sorted({r["lam"] for r in results["lambda"]})
  families = sorted({f for r in results["lambda"] for f in r.get("families", {})})
  curve = ["| lambda | accuracy | models | " + "".join(f"{f} models | " for f in families)
           + "MFLOPs/image |", "|---|---|---|" + "---|" * len(families) + "---|"]
  for lam in lams:
    rows = [r for r in results["lambda"] if r["lam"] == lam]
    by_family = "".join(f"{np.mean([r.get('families', {}).get(f, 0) for r in rows]):.1f} | "
                        for f in families)
    curve.append(f"| {lam:g} | {_mean_std([r['accuracy'] for r in rows])} | "
                 f"{np.mean([r['models'] for r in rows]):.1f} | {by_family}"
                 f"{_mean_std([r['mflops'] for r in rows])} |")
  lines = ["# Hub scaling: zero-shot accuracy of reused experts", "",
           f"Command: `{settings['command']}`", "",
           f"Tasks ({len(results['tasks'])}, given by class names only): " +
           "; ".join(f"{d}: {','.join(c)}" for d, c in results["tasks"]) + ".", "",
           f"## Accuracy against hub size (lambda {settings['lam']:g}; mean ± std over "
           f"{settings['orderings']} random hub orderings of the per-ordering mean over tasks)",
           "", *scaling_lines, "", "## Baselines at the full hub", "", *base, "",
           "## Per data set at the full hub (mean over its tasks)", "",
           *per_dataset_lines(results), "", *trained_lines(results.get("trained", {})),
           "## Accuracy against cost over CHCO's lambda (full hub)", "", *curve, ""]
  if settings.get("compare_to"):
    compare_to = pathlib.Path(settings["compare_to"])
    lines += comparison_lines(results, json.loads(compare_to.read_text()), compare_to.name)
  stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
  with stem.with_suffix(".csv").open("w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["part", "method", "ordering", "size", "lam", "task", "accuracy", "models",
                     "mflops", "families"])
    for r in results["scaling"]:
      writer.writerow(["scaling", r["method"], r["ordering"], r["size"], settings["lam"],
                       r["task"], r["accuracy"], r["models"], r["mflops"]])
    for r in results["baselines"]:
      writer.writerow(["baseline", r["method"], "", "", "", r["task"], r["accuracy"],
                       r["models"], r["mflops"]])
    for r in results["lambda"]:
      writer.writerow(["lambda", "chco", "", "", r["lam"], r["task"], r["accuracy"],
                       r["models"], r["mflops"],
                       ";".join(f"{f}:{n}" for f, n in sorted(r.get("families", {}).items()))])
  _plot(by_size, results["lambda"], stem.with_suffix(".png"))
  plot_trained_curves(results.get("trained", {}), stem.parent / f"{stem.name}_curves.png")
  print("\n".join(lines))


def _plot(curves: dict, lambda_rows: list[dict], path: pathlib.Path) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
  for method, by_size in curves.items():
    sizes = sorted(by_size)
    left.errorbar(sizes, [np.mean(by_size[s]) for s in sizes],
                  yerr=[np.std(by_size[s]) for s in sizes], marker="o", capsize=3, label=method)
  left.set_xlabel("models in the hub")
  left.set_ylabel("zero-shot accuracy (held-out tasks)")
  left.legend()
  lams = sorted({r["lam"] for r in lambda_rows})
  cost = [np.mean([r["mflops"] for r in lambda_rows if r["lam"] == lam]) for lam in lams]
  acc = [np.mean([r["accuracy"] for r in lambda_rows if r["lam"] == lam]) for lam in lams]
  right.plot(cost, acc, marker="o")
  for lam, x, y in zip(lams, cost, acc):
    right.annotate(f"λ={lam:g}", (x, y), fontsize=7)
  right.set_xlabel("MFLOPs per image of the selected ensemble")
  right.set_ylabel("zero-shot accuracy")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def task_references(study_json: pathlib.Path, task: str) -> list[str]:
  """The labelled references of hub_scaling.py on this task's same test images (its committed
  json), or a line saying they are missing."""
  rows = ({r["method"]: r["accuracy"] for r in json.loads(study_json.read_text())["baselines"]
           if r["task"] == task} if study_json.exists() else {})
  named = [f"{m} {rows[m]:.3f}" for m in ("oracle", "generalist", "knn_pixels") if m in rows]
  if not named:
    return [f"(No references: `{study_json.name}` has no row of this task; run "
            "experiments/hub_scaling.py first.)", ""]
  return [f"References on the same test images (`{study_json.name}`): {', '.join(named)}; "
          "each sees the task's labels, which CHCO never does.", ""]
