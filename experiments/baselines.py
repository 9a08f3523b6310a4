"""Reference baselines on the studies' splits: what any method must beat.

    python -m experiments.baselines                                # animal_mnist
    python -m experiments.baselines --data=mnist --manual_dir=DIR  # MNIST's IDX files
    python -m experiments.baselines --quick                        # a smoke run (tests)

At every label fraction and seed, on exactly the images a study run with the same
`data.labels`, `data.validation` and `seed` trains on (mll_jax.data.run_split):
  knn_pixels     1-nearest-neighbour on raw pixels (no hyperparameter)
  logreg_pixels  multinomial logistic regression on standardised pixels (scikit-learn's
                 defaults, C = 1: nothing tuned)
  cnn            the 94k-parameter CNN (configs/finetune.py:cnn_s) trained by mll_jax's own
                 trainer, its validation accuracy logged on the held-out part of train
The CNN gets `--cnn_epochs` passes over its labelled subset, at least `--cnn_min_steps` steps.
Test accuracy is read once, at the end; the learning curves are on the holdout.
Writes `<out>/baselines[_<data>].{md,csv,png}`. Finished runs are skipped on a rerun, only where
they were trained with the config built now (experiments/finished_runs.py).
"""

import json
import math
import pathlib
import sys
import time

import numpy as np
from absl import app, flags

REPO = pathlib.Path(__file__).resolve().parents[1]

if __name__ == "__main__":  # the process is set up (allocator, libtpu) before JAX loads
  from mll_jax import command
  command.start()

from experiments import baselines_report as report  # noqa: E402
from experiments import curves, finished_runs, smoke, study_cli  # noqa: E402
import configs  # noqa: E402
from mll_jax import sweep, train  # noqa: E402
from mll_jax.data import label_fractions, pipeline, run_split, sources  # noqa: E402

_QUICK = flags.DEFINE_bool("quick", False, "The `cnn_mu` model and a few steps: a smoke test.")
_DATA = flags.DEFINE_enum("data", "animal_mnist", ["animal_mnist", "mnist"], "Data set.")
_MANUAL_DIR = flags.DEFINE_string("manual_dir", "", "Folder of MNIST's IDX files (--data=mnist).")
_STUDY_DIR = flags.DEFINE_string("study_dir", None, "Runs folder (default runs/baselines_*).")
_OUT = flags.DEFINE_string("out", str(REPO / "experiments" / "results"), "Results folder.")
_SEEDS = flags.DEFINE_integer("seeds", None, "Seeds per fraction (default 3; quick 1).")
_FRACTIONS = flags.DEFINE_list("fractions", None, "Label fractions (default 1%,10%,100%).")
_VALIDATION = flags.DEFINE_float("validation", 0.1, "Fraction of train held out for validation.")
_CNN_EPOCHS = flags.DEFINE_float("cnn_epochs", 15.0, "CNN passes over its labelled subset.")
_CNN_MIN_STEPS = flags.DEFINE_integer("cnn_min_steps", 1500, "Fewest CNN training steps.")
_EVALS = flags.DEFINE_integer("curve_points", 15, "Validation evaluations per CNN run.")

METRIC = "classification/accuracy"
PIXEL_METHODS = ("knn_pixels", "logreg_pixels")


def _config(settings: dict, fraction: str, seed: int):
  """`configs/finetune.py:cnn_s,<data>` with the study's labels, seed and holdout."""
  config = configs.get_config("finetune", 
      f"{'cnn_mu' if settings['quick'] else 'cnn_s'},{settings['data']}")
  overrides = {"data.labels": fraction, "seed": seed, "data.validation": settings["validation"],
               "data.manual_dir": settings["manual_dir"]}
  if settings["quick"]:
    overrides.update(smoke.shrink(config))
  return sweep.apply_overrides(config, overrides)


def _split_arrays(config, split: str | None, seed: int) -> dict:
  """A split as `{"image", "label"}` arrays; `split=None` is the run's training images."""
  builder = sources.get_builder(config.data.name, config.data.data_dir or None,
                                config.data.manual_dir or None)
  if split is None:
    source = run_split.training_source(sources.data_source(builder, config.data.train_split),
                                       config.data, seed, sources.info(builder).class_names)
  else:
    source = sources.data_source(builder, split)
  return pipeline.eval_arrays(source, size=config.data.image_size,
                              channels=config.data.channels)


def pixel_baselines(train: dict, test: dict) -> dict:
  """Test accuracy of 1-NN and logistic regression on raw pixels."""
  from sklearn.linear_model import LogisticRegression
  from sklearn.neighbors import KNeighborsClassifier
  from sklearn.pipeline import make_pipeline
  from sklearn.preprocessing import StandardScaler
  flat = lambda images: images.reshape(len(images), -1).astype(np.float32) / 255.0
  x, y, x_test = flat(train["image"]), train["label"], flat(test["image"])
  knn = KNeighborsClassifier(n_neighbors=1).fit(x, y)
  logreg = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(x, y)
  return {"knn_pixels": float((knn.predict(x_test) == test["label"]).mean()),
          "logreg_pixels": float((logreg.predict(x_test) == test["label"]).mean())}


def cnn_run(config, labelled: int, settings: dict, workdir: pathlib.Path) -> dict:
  """Trains the CNN (unless finished before with the same config); returns its test accuracy
  and its curve."""
  batch = label_fractions.batch_size_for(config.batch_size, labelled)
  steps = max(math.ceil(settings["cnn_epochs"] * labelled / batch), settings["cnn_min_steps"])
  if settings["quick"]:
    steps = config.total_steps
  every = max(steps // settings["curve_points"], 1)
  config = sweep.apply_overrides(config, {
      "batch_size": batch, "total_steps": steps, "warmup_steps": max(steps // 20, 1),
      "checkpoint.every_steps": max(steps // 4, 1),
      "evals.classification.log_steps": steps})  # test: once, at the end
  config.evals.validation = {"kind": "classification", "split": "holdout",
                             "log_steps": every, "num_examples": 0, "batch_size": 256}
  result = finished_runs.finished_result(workdir, config)
  if result is None:
    train.run(config, workdir)
    result = {"test": sweep.final_metrics(workdir)[METRIC], "curve": curves.read(workdir),
              "steps": steps, "batch_size": batch}
    (workdir / "result.json").write_text(json.dumps(result))
  return result


def run_study(study_dir: pathlib.Path, out: pathlib.Path, settings: dict, seeds: int,
              fractions: list[str]) -> dict:
  """Every baseline at every fraction and seed; writes the report; returns the results."""
  started = time.time()
  results = {m: {f: [] for f in fractions} for m in (*PIXEL_METHODS, "cnn")}
  curves, runs = {f: [] for f in fractions}, {}
  test = _split_arrays(_config(settings, fractions[0], 0), "test", 0)
  for fraction in fractions:
    tag = fraction.replace("%", "pct")
    for seed in range(seeds):
      config = _config(settings, fraction, seed)
      train_arrays = _split_arrays(config, None, seed)
      for method, accuracy in pixel_baselines(train_arrays, test).items():
        results[method][fraction].append(accuracy)
      cnn = cnn_run(config, len(train_arrays["label"]), settings,
                    study_dir / f"cnn_{tag}_seed{seed}")
      results["cnn"][fraction].append(cnn["test"])
      curves[fraction].append(cnn["curve"])
      runs[fraction] = {"labelled": len(train_arrays["label"]), "steps": cnn["steps"],
                        "batch_size": cnn["batch_size"]}
  settings["seconds"] = time.time() - started
  report.write(results, curves, runs, settings, out)
  return results


def main(argv):
  del argv
  train.setup_runtime()
  quick, data = _QUICK.value, _DATA.value
  study_cli.require_mnist_files(data, _MANUAL_DIR.value)
  settings = {"quick": quick, "data": data, "manual_dir": _MANUAL_DIR.value,
              "validation": _VALIDATION.value, "cnn_epochs": _CNN_EPOCHS.value,
              "cnn_min_steps": _CNN_MIN_STEPS.value, "curve_points": _EVALS.value,
              "command": study_cli.command_line(sys.argv)}
  suffix = ("_quick" if quick else "") + ("" if data == "animal_mnist" else f"_{data}")
  study_dir = pathlib.Path(_STUDY_DIR.value or f"runs/baselines{suffix}")
  with finished_runs.stale_runs_stop("baselines.py"):
    run_study(study_dir.absolute(), pathlib.Path(_OUT.value), settings,
              seeds=_SEEDS.value or (1 if quick else 3),
              fractions=_FRACTIONS.value or (["10%"] if quick else ["1%", "10%", "100%"]))


if __name__ == "__main__":
  app.run(main)
