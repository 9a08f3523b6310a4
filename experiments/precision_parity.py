"""Does bfloat16 compute reach the float32 result? The default MAE run and a fine-tune, each in
float32 and in bfloat16 (`config.model.dtype`), over seeds, compared against the seed spread.

    python -m experiments.precision_parity [--seeds=2] [--quick] [--narrow=bfloat16_matmul]

Points: `configs/mae.py` as the README's main-job command runs it (the `tiny` MAE on
animal_mnist), judged by its final few-shot accuracy and reconstruction loss on the holdout
(the same 10% of train for every run), and `configs/finetune.py:mini,animal_mnist,labels=10%`
from scratch, judged by test accuracy. A claim holds when the difference of the two means is
no larger than the larger of the two seed spreads (max - min over seeds). Writes
`experiments/results/precision_parity.md` with each run's images/s as trained, and the
fine-tune point's reference baselines on its split from `experiments/results/baselines.csv`.
"""

import csv
import json
import pathlib
import statistics
import sys
import time

from absl import app, flags

REPO = pathlib.Path(__file__).resolve().parents[1]

if __name__ == "__main__":  # the process is set up (allocator, libtpu) before JAX loads
  from mll_jax import command
  command.start()

from experiments import finished_runs, smoke, study_cli  # noqa: E402
import configs  # noqa: E402
from mll_jax import sweep, train  # noqa: E402
from mll_jax.data import holdout  # noqa: E402

_SEEDS = flags.DEFINE_integer("seeds", 2, "Seeds per point.")
_POINTS = flags.DEFINE_list("points", ["mae", "finetune"],
                            "Which points to run, by config file; a subset writes its own report.")
_QUICK = flags.DEFINE_bool("quick", False, "The `mu` model and a few steps: a smoke test.")
_WORKDIR = flags.DEFINE_string("study_dir", None, "Runs folder (default runs/precision_parity).")
_OUT = flags.DEFINE_string("out", str(REPO / "experiments" / "results"), "Results folder.")
_NARROW = flags.DEFINE_enum(
    "narrow", "bfloat16", ["bfloat16", "bfloat16_matmul"],
    "The policy compared with float32 (models/precision.py); the float32 runs are shared.")
# name -> (config file, arg, quick arg, metrics judged: (key, higher is better))
POINTS = {
    "MAE pre-training": ("mae", "tiny,animal_mnist", "mu,animal_mnist",
                         (("fewshot/10shot", True), ("reconstruction/loss", False))),
    "fine-tune from scratch, 10% labels": (
        "finetune", "mini,animal_mnist,labels=10%", "mu,animal_mnist,labels=10%",
        (("classification/accuracy", True),)),
}


def _config(file: str, arg: str, dtype: str, seed: int, quick: bool):
  config = configs.get_config(file, arg)
  overrides = {"model.dtype": dtype, "seed": seed, "data.validation": 0.1}
  if file == "mae":  # the pre-training's evaluators read the holdout, never test
    holdout.evaluate_on_holdout(config)
  if file == "finetune":
    # The committed study ran with shifts alone, animal_mnist's default at 10% until
    # 2026-12-06 (now shift+flip, configs/finetune.py FEW_LABEL_AUGMENT): kept, so that it
    # regenerates as run. The comparison is of dtypes, under either augmentation.
    overrides["data.augment"] = "shift"
  if quick:
    overrides = {**smoke.shrink(config), **overrides}
    if "fewshot" in config.evals:
      overrides["evals.fewshot.shots"] = (10,)
  return sweep.apply_overrides(config, overrides)


def _run(config, workdir: pathlib.Path) -> dict:
  """Trains unless finished with the same config; final metrics, wall seconds and images/s of
  the training steps."""
  result = finished_runs.finished_result(workdir, config)
  if result is None:
    started = time.time()
    train.run(config, workdir)
    final = sweep.final_metrics(workdir)
    rates = [json.loads(line).get("images_per_sec") for line in
             (workdir / "metrics.jsonl").read_text().splitlines()]
    rates = [r for r in rates if r]
    result = {**final, "seconds": time.time() - started,
              "images_per_sec": statistics.median(rates) if rates else 0}
    (workdir / "result.json").write_text(json.dumps(result))
  return result


# The fine-tune point's reference baselines: experiments/baselines.py draws, per seed, exactly
# the labelled images a run with the same `data.labels`, `data.validation` (0.1) and `seed`
# trains on, so its rows for this point's fraction and seeds are on this point's split.
BASELINES_CSV = REPO / "experiments" / "results" / "baselines.csv"
BASELINES_FRACTION = "10%"


def baseline_lines(seeds: int, path: pathlib.Path = BASELINES_CSV) -> list[str]:
  """The fine-tune point's reference baselines (1-NN on pixels, the small CNN) on its split, at
  its seeds, read from the baselines study's table; says so where that table lacks them."""
  rows = list(csv.DictReader(path.open())) if path.exists() else []
  lines = [f"Reference baselines for the fine-tune point, on its split ({BASELINES_FRACTION} "
           f"labels, the same holdout, seeds 0-{seeds - 1}), from `{path.name}` "
           "(`python -m experiments.baselines`; not rerun here):", ""]
  for method, label in (("knn_pixels", "1-NN on pixels"), ("cnn", "small CNN (`cnn_s`)")):
    values = [float(r["accuracy"]) for r in rows if r["method"] == method
              and r["fraction"] == BASELINES_FRACTION and int(r["seed"]) < seeds]
    if len(values) < seeds:
      lines.append(f"- {label}: not in `{path.name}` for seeds 0-{seeds - 1}.")
    else:
      lines.append(f"- {label}: {statistics.mean(values):.4f} ± {statistics.pstdev(values):.4f}"
                   f" (per seed {', '.join(f'{v:.3f}' for v in values)})")
  return lines


def _spread(values: list[float]) -> float:
  return max(values) - min(values) if values else float("nan")


def report(results: dict, seeds: int, command: str, narrow: str = "bfloat16") -> str:
  """The markdown table and the verdict per metric (`narrow` against float32)."""
  dtypes = ("float32", narrow)
  lines = [f"# {narrow} vs float32 compute (mean ± std over seeds)", "",
           f"Command: `{command}`", "", f"{seeds} seed(s) per cell; parameters and optimizer "
           f"state are float32 in both. A metric holds when |mean {narrow} - mean float32| is "
           "no larger than the larger seed spread (max - min).", "",
           f"| run | metric | float32 | {narrow} | difference | seed spread | verdict |",
           "|---|---|---|---|---|---|---|"]
  for name in results:
    for key, _ in POINTS[name][3]:
      values = {d: [r[key] for r in results[name][d]] for d in dtypes}
      difference = statistics.mean(values[narrow]) - statistics.mean(values["float32"])
      spread = max(_spread(values[d]) for d in dtypes)
      verdict = "within the seed spread" if abs(difference) <= spread else "**outside**"
      cell = lambda v: (f"{statistics.mean(v):.4f} ± {statistics.pstdev(v):.4f}")
      lines.append(f"| {name} | {key} | {cell(values['float32'])} | "
                   f"{cell(values[narrow])} | {difference:+.4f} | {spread:.4f} | "
                   f"{verdict} |")
  lines += ["", "| run | dtype | training images/s (median of log steps) | wall min per run |",
            "|---|---|---|---|"]
  for name in results:
    for d in dtypes:
      runs = results[name][d]
      lines.append(f"| {name} | {d} | "
                   f"{statistics.mean(r['images_per_sec'] for r in runs):.0f} | "
                   f"{statistics.mean(r['seconds'] for r in runs) / 60:.1f} |")
  files = {POINTS[name][0] for name in results}
  if "finetune" in files:
    lines += ["", *baseline_lines(seeds)]
  if "mae" in files:
    lines += ["", "The MAE point's metrics are on the pre-training holdout and have no pixel "
              "baseline."]
  return "\n".join(lines) + "\n"


def main(argv):
  del argv
  train.setup_runtime()
  quick = _QUICK.value
  known = {file for file, *_ in POINTS.values()}
  if unknown := set(_POINTS.value) - known:
    raise app.UsageError(f"--points: unknown {sorted(unknown)}; known: {sorted(known)}")
  study_dir = pathlib.Path(_WORKDIR.value or
                           f"runs/precision_parity{'_quick' if quick else ''}").absolute()
  dtypes = ("float32", _NARROW.value)
  results = {}
  with finished_runs.stale_runs_stop("precision_parity.py"):
    for name, (file, arg, quick_arg, _) in POINTS.items():
      if file not in _POINTS.value:
        continue
      results[name] = {d: [] for d in dtypes}
      for seed in range(_SEEDS.value):
        for dtype in dtypes:  # alternating, so machine load drifts onto both alike
          config = _config(file, quick_arg if quick else arg, dtype, seed, quick)
          tag = f"{file}_{dtype}_seed{seed}"
          results[name][dtype].append(_run(config, study_dir / tag))
  text = report(results, _SEEDS.value, study_cli.command_line(sys.argv), _NARROW.value)
  out = pathlib.Path(_OUT.value)
  out.mkdir(parents=True, exist_ok=True)
  subset = "" if known <= set(_POINTS.value) else "_" + "_".join(sorted(_POINTS.value))
  policy = "" if _NARROW.value == "bfloat16" else f"_{_NARROW.value}"
  (out / f"precision_parity{policy}{subset}{'_quick' if quick else ''}.md").write_text(text)
  print(text)


if __name__ == "__main__":
  app.run(main)
