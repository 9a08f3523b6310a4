"""The hub build's report: the hub table, each expert's test accuracy on its own classes beside
its validation curve and the issue's targets, and the curves as a PNG."""

import pathlib

import numpy as np

from experiments import curves, hub_experts
from mll_jax import sweep
from mll_jax.data import class_subsets, holdout, pipeline, sources
from mll_jax.hub import report as hub_report
from mll_jax.hub import run_import

# Test accuracy each expert should reach on its own classes (issue 12): a CNN reaches 0.99 on
# all ten MNIST digits, and 0.97 on all ten animal_mnist classes.
TARGETS = {"mnist": 0.99, "animal_mnist": 0.93}


def trained_run(workdir: pathlib.Path) -> dict:
  """Test accuracy, final validation accuracy, validation curve and steps of a finished
  expert, oracle or generalist run (experiments/hub_experts.train_expert)."""
  final = sweep.final_metrics(workdir)
  curve = curves.read(workdir, hub_experts.VALIDATION_METRIC)
  return {"test": final.get(hub_experts.TEST_METRIC, float("nan")),
          "test_images": final.get("classification/examples", 0),
          "validation": final.get(hub_experts.VALIDATION_METRIC, float("nan")),
          "curve": curve, "steps": curve[-1][0] if curve else 0}


def pixel_knn(workdir: pathlib.Path, test: tuple | None = None) -> float:
  """Test accuracy of 1-NN on raw pixels on the run's own split: its classes' training images
  less its holdout, scored on its classes' test images (the reference baseline beside it), or
  on `test`: `(images, the class name of each)`, as a study scores the run (e.g. a seeded
  subset of the test images)."""
  from sklearn.neighbors import KNeighborsClassifier
  config = run_import.run_config(workdir)
  builder = sources.get_builder(config.data.name, config.data.get("data_dir") or None,
                                config.data.get("manual_dir") or None)
  info = sources.info(builder)
  indices = class_subsets.resolve(config.get("classes", ""), info.class_names)
  names = class_subsets.restrict_info(info, indices).class_names
  train = class_subsets.apply(sources.data_source(builder, config.data.train_split), indices)
  train, _ = holdout.carve(train, config.data, names)
  arrays = lambda source: pipeline.eval_arrays(source, size=config.data.image_size,
                                               channels=config.data.channels)
  train = arrays(train)
  if test is None:
    own = arrays(class_subsets.apply(sources.data_source(builder, "test"), indices))
    test = (own["image"], np.asarray(names)[own["label"]])
  flat = lambda images: images.reshape(len(images), -1).astype(np.float32)
  knn = KNeighborsClassifier(n_neighbors=1).fit(flat(train["image"]), train["label"])
  predicted = np.asarray(names)[knn.predict(flat(test[0]))]
  return float((predicted == np.asarray(test[1])).mean())


def expert_lines(runs: dict) -> list[str]:
  """Markdown table: `runs` maps expert name -> (data set, classes, model, trained_run)."""
  lines = ["| expert | data | model | classes | test accuracy | 1-NN on pixels | target | "
           "test images | steps | validation curve |", "|---|---|---|---|---|---|---|---|---|---|"]
  for name, (data, classes, model, run) in runs.items():
    target = TARGETS.get(data)
    verdict = "" if target is None else (" (met)" if run["test"] >= target else " (missed)")
    flat = curves.flatness([run["curve"]]) if run["curve"] else "no curve"
    knn = f"{run['knn_pixels']:.3f}" if "knn_pixels" in run else "-"
    lines.append(f"| {name} | {data} | {model} | {classes} | {run['test']:.3f}{verdict} | "
                 f"{knn} | {target if target else '-'} | {run['test_images']} | "
                 f"{run['steps']} | {flat} |")
  return lines


def target_summary(runs: dict) -> list[str]:
  """One line per data set: how many experts met their target, and the lowest accuracy."""
  lines = []
  for data, target in TARGETS.items():
    accuracies = [run["test"] for d, _, _, run in runs.values() if d == data]
    if accuracies:
      met = sum(a >= target for a in accuracies)
      lines.append(f"- {data}: {met} of {len(accuracies)} experts reach the {target} target "
                   f"on their own classes (mean {np.mean(accuracies):.3f}, lowest "
                   f"{min(accuracies):.3f}).")
  return lines


def coverage_lines(runs: dict) -> list[str]:
  """One line per data set: the pairs of its classes that no expert of `runs` holds both of
  (CHCO can only separate such a pair through experts that each saw one of the two)."""
  lines = []
  for data in dict.fromkeys(d for d, _, _, _ in runs.values()):
    held = {name: classes for name, (d, classes, _, _) in runs.items() if d == data}
    uncovered = hub_experts.uncovered_pairs(held)
    lines.append(f"- {data}: pairs of its classes that no expert holds: "
                 f"{', '.join('-'.join(p) for p in uncovered) if uncovered else 'none'}.")
  return lines


def write(hub, runs: dict, settings: dict, stem: pathlib.Path) -> str:
  """`<stem>.md` and `<stem>_curves.png`; returns the markdown."""
  lines = ["# The experiment hub (experiments/build_hub.py)", "",
           f"Command: `{settings['command']}`", "",
           f"Built in {settings['minutes']:.1f} min wall clock on this machine "
           f"({settings['devices']}); hub on disk {settings['megabytes']:.1f} MB, pools "
           "included.", "", "```", hub_report.hub_table(hub), "```", "",
           "## Each expert on the test images of its own classes", "",
           f"Every expert holds out {hub_experts.VALIDATION:.0%} of its classes' training "
           f"images and logs its accuracy there {hub_experts.CURVE_POINTS} times "
           f"(`{stem.name}_curves.png`); test is read once, at the end. A change near 0 over "
           "the last third means the run ended on a flat curve.", "",
           *expert_lines(runs), "", *target_summary(runs), *coverage_lines(runs)]
  text = "\n".join(lines) + "\n"
  stem.parent.mkdir(parents=True, exist_ok=True)
  stem.with_suffix(".md").write_text(text)
  _plot(runs, stem.parent / f"{stem.name}_curves.png")
  return text


def _plot(runs: dict, path: pathlib.Path) -> None:
  panels = {}
  for name, (data, _, _, run) in runs.items():
    if run["curve"]:
      panels.setdefault(f"{data} experts", {})[name] = run["curve"]
  curves.plot_panels(panels, path, "validation accuracy (holdout of its classes)")
