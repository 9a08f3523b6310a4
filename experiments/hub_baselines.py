"""Every trained classifier of a hub study (experts, oracles, generalists) beside its two
reference baselines on the same split: 1-NN on raw pixels, and the small CNN (`cnn_s`) trained
by mll_jax on the run's own training images less its holdout. Image by image on the same test
images of the run's classes, with McNemar's exact test.

    python -m experiments.hub_baselines --runs_dir=runs/hub_runs [--nocnn] [--datasets=mnist]
    python -m experiments.hub_baselines --runs_dir=... --quick     # tests: seconds

A run a few test images below a baseline may be a defect or the draw of the test set: of the
images one of the two gets right and the other wrong, an even split is what equal accuracy
gives, and the test says how uneven a split the test images can show by chance. The CNNs train
in `<runs_dir>_cnn/<run>` for `hub_experts.CNN_EPOCHS` passes (at least `MIN_STEPS` steps) with
the run's holdout and validation curve; finished ones are reused. Writes
`<out>/hub_baselines[_quick].md`.
"""

import pathlib
import sys
import time

from absl import app, flags

REPO = pathlib.Path(__file__).resolve().parents[1]

if __name__ == "__main__":  # the process is set up (allocator, libtpu) before JAX loads
  from mll_jax import command
  command.start()

from experiments import curves, hub_build_report, hub_experts, study_cli  # noqa: E402
from mll_jax import train  # noqa: E402
from mll_jax.hub import run_import  # noqa: E402

_RUNS_DIR = flags.DEFINE_string("runs_dir", "runs/hub_runs", "A hub study's training runs.")
_CNN = flags.DEFINE_bool("cnn", True, "Train the small CNN beside each run (else 1-NN only).")
_DATASETS = flags.DEFINE_list("datasets", ["animal_mnist", "mnist"],
                              "The data sets whose runs are compared.")
_QUICK = flags.DEFINE_bool("quick", False, "The CNN's test-sized stand-in, 3 steps each.")
_OUT = flags.DEFINE_string("out", str(REPO / "experiments" / "results"), "Report folder.")


def classifier_runs(runs_dir: pathlib.Path) -> dict:
  """`{run name: (data set, classes, MNIST's IDX folder or None)}` of the finished
  classifier runs in `runs_dir` (not its MAE encoders)."""
  runs = {}
  for workdir in sorted(p.parent for p in runs_dir.glob("*/metrics.jsonl")):
    config = run_import.run_config(workdir)
    if config.task in ("supervised", "expert"):
      runs[workdir.name] = (config.data.name.removeprefix("idx/"), config.get("classes", ""),
                            config.data.get("manual_dir") or None)
  return runs


def main(argv):
  del argv
  train.setup_runtime()
  runs_dir = pathlib.Path(_RUNS_DIR.value).absolute()
  runs = classifier_runs(runs_dir) if runs_dir.is_dir() else {}
  runs = {name: run for name, run in runs.items() if run[0] in _DATASETS.value}
  if not runs:
    raise app.UsageError(f"--runs_dir={runs_dir} holds no finished classifier runs of "
                         f"{', '.join(_DATASETS.value)}: pass a hub study's runs "
                         "(build_hub.py writes them to <hub_dir>_runs).")
  started, results = time.time(), {}
  for name, (data, classes, mnist_dir) in runs.items():
    cnn_workdir, curve = None, None
    if _CNN.value:
      cnn_workdir = pathlib.Path(f"{runs_dir}_cnn") / name
      config = hub_experts.expert_config(runs_dir, data, classes, _QUICK.value, mnist_dir,
                                         model="cnn_s")
      train.run(config, cnn_workdir)
      curve = curves.read(cnn_workdir, hub_experts.VALIDATION_METRIC)
    results[name] = (data, classes,
                     hub_build_report.against_baselines(runs_dir / name, cnn_workdir), curve)
  cnn = (f"`configs/expert.py:cnn_s` from scratch, {hub_experts.CNN_EPOCHS} passes by data set "
         f"and at least {hub_experts.MIN_STEPS} steps, as the mixed hub's CNN experts train"
         if _CNN.value else "not trained (`--nocnn`)")
  text = "\n".join([
      "# Each trained classifier of the hub study beside its reference baselines", "",
      f"Command: `{study_cli.command_line(sys.argv)}`; {(time.time() - started) / 60:.1f} min.",
      "",
      "All on the same test images of the run's classes. 1-NN on pixels fits the run's "
      "training images less its holdout; the small CNN trains on the same images: " + cnn +
      ". Accuracies are recomputed from the checkpoints. Paired counts: of the test images one "
      "of the two gets right and the other wrong, how many each; p is McNemar's exact "
      f"two-sided test, called significant below {hub_build_report.SIGNIFICANCE}.", "",
      *hub_build_report.baselines_table(results)]) + "\n"
  print(text)
  out = pathlib.Path(_OUT.value)
  out.mkdir(parents=True, exist_ok=True)
  (out / ("hub_baselines_quick.md" if _QUICK.value else "hub_baselines.md")).write_text(text)


if __name__ == "__main__":
  app.run(main)
