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


def _run_split(workdir: pathlib.Path) -> tuple:
  """`(config, class names, training arrays less the holdout, own test arrays)` of a run:
  the split its 1-NN baseline trains and is scored on."""
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
  test = arrays(class_subsets.apply(sources.data_source(builder, "test"), indices))
  return config, names, arrays(train), test


def _knn_predictions(train: dict, images: np.ndarray) -> np.ndarray:
  """1-NN on raw pixels: the label index of each image's nearest training image."""
  from sklearn.neighbors import KNeighborsClassifier
  flat = lambda batch: batch.reshape(len(batch), -1).astype(np.float32)
  return KNeighborsClassifier(n_neighbors=1).fit(flat(train["image"]), train["label"]).predict(
      flat(images))


def pixel_knn(workdir: pathlib.Path, test: tuple | None = None) -> float:
  """Test accuracy of 1-NN on raw pixels on the run's own split: its classes' training images
  less its holdout, scored on its classes' test images (the reference baseline beside it), or
  on `test`: `(images, the class name of each)`, as a study scores the run (e.g. a seeded
  subset of the test images)."""
  _, names, train, own = _run_split(workdir)
  if test is None:
    test = (own["image"], np.asarray(names)[own["label"]])
  predicted = np.asarray(names)[_knn_predictions(train, test[0])]
  return float((predicted == np.asarray(test[1])).mean())


def paired_test(right_a: np.ndarray, right_b: np.ndarray) -> dict:
  """McNemar's exact test of two classifiers scored on the same images (`right_*`: whether
  each got each image right): the images only `a` gets right, only `b` gets right, and the
  two-sided p-value of so uneven a split of those discordant images under equal accuracy."""
  from scipy.stats import binomtest
  a_only, b_only = int(np.sum(right_a & ~right_b)), int(np.sum(right_b & ~right_a))
  p = binomtest(a_only, a_only + b_only).pvalue if a_only + b_only else 1.0
  return {"a_only": a_only, "b_only": b_only, "p": float(p)}


def _predict(workdir: pathlib.Path, images: np.ndarray) -> np.ndarray:
  """The label index a trained run (its latest checkpoint) predicts for each image."""
  import jax
  from mll_jax.hub import functional
  architecture, variables, _, _ = run_import.read_run(workdir)
  logits = jax.jit(functional.apply_fn(architecture))
  return np.concatenate([np.asarray(logits(variables, images[i:i + 256])).argmax(-1)
                         for i in range(0, len(images), 256)])


def against_baselines(workdir: pathlib.Path, cnn_workdir: pathlib.Path | None = None) -> dict:
  """A trained run (expert, oracle, generalist) against its reference baselines on the same
  test images of its classes: 1-NN on raw pixels fitted on the run's training images less its
  holdout, and, given `cnn_workdir`, the small CNN trained on the same split. Accuracies (the
  runs' recomputed from their checkpoints) and `paired_test`'s counts with `a` the run."""
  _, names, train, test = _run_split(workdir)
  right = lambda predicted: predicted == test["label"]
  run_right = right(_predict(workdir, test["image"]))
  knn_right = right(_knn_predictions(train, test["image"]))
  result = {"images": len(run_right), "run": float(run_right.mean()),
            "knn": float(knn_right.mean()), "vs_knn": paired_test(run_right, knn_right)}
  if cnn_workdir is not None:
    cnn_names = _run_split(cnn_workdir)[1]
    if list(cnn_names) != list(names):
      raise ValueError(f"{cnn_workdir} holds classes {cnn_names}, {workdir} {names}: the "
                       "baseline must train on the run's own classes.")
    cnn_right = right(_predict(cnn_workdir, test["image"]))
    result.update(cnn=float(cnn_right.mean()), vs_cnn=paired_test(run_right, cnn_right))
  return result


# McNemar's p below which a difference between two classifiers on the same test images is
# called resolved by them.
SIGNIFICANCE = 0.05


def verdict(paired: dict, baseline: str) -> str:
  """Below, level with, or above `baseline`, and whether the paired test resolves it."""
  if paired["a_only"] == paired["b_only"]:
    return "level"
  side = "above" if paired["a_only"] > paired["b_only"] else "below"
  resolved = "significant" if paired["p"] < SIGNIFICANCE else "not significant"
  return f"{side} {baseline} ({resolved})"


def _paired_cell(paired: dict, baseline: str) -> str:
  return (f"{paired['a_only']} / {paired['b_only']}, p = {paired['p']:.3f}: "
          f"{verdict(paired, baseline)}")


def baselines_table(results: dict) -> list[str]:
  """Markdown table of `{run: (data set, classes, against_baselines' result, the CNN's
  validation curve or None)}` (experiments/hub_baselines.py)."""
  lines = ["| run | data | classes | test images | run | 1-NN on pixels | small CNN | run "
           "against 1-NN: only the run right / only 1-NN right, p | run against the CNN: only "
           "the run / only the CNN, p | CNN validation curve |",
           "|---|---|---|---|---|---|---|---|---|---|"]
  for name, (data, classes, r, curve) in results.items():
    cnn = (f"{r['cnn']:.3f}", _paired_cell(r["vs_cnn"], "the CNN")) if "cnn" in r else ("-", "-")
    lines.append(f"| {name} | {data} | {classes or 'all'} | {r['images']} | {r['run']:.3f} | "
                 f"{r['knn']:.3f} | {cnn[0]} | {_paired_cell(r['vs_knn'], '1-NN')} | {cnn[1]} | "
                 f"{curves.flatness([curve]) if curve else '-'} |")
  return lines


def expert_lines(runs: dict) -> list[str]:
  """Markdown table: `runs` maps expert name -> (data set, classes, model, trained_run)."""
  lines = ["| expert | data | model | classes | test accuracy | 1-NN on pixels | target | "
           "test images | steps | validation curve |", "|---|---|---|---|---|---|---|---|---|---|"]
  for name, (data, classes, model, run) in runs.items():
    target = TARGETS.get(data)
    met = "" if target is None else (" (met)" if run["test"] >= target else " (missed)")
    flat = curves.flatness([run["curve"]]) if run["curve"] else "no curve"
    knn = f"{run['knn_pixels']:.3f}" if "knn_pixels" in run else "-"
    lines.append(f"| {name} | {data} | {model} | {classes} | {run['test']:.3f}{met} | "
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
