"""Config sweeps: `python -m mll_jax.sweep --config=CONFIG --sweep=SWEEP_FILE [--workdir=DIR]`.

A sweep file is a Python file whose `get_sweep()` returns::

    {"grid": {"optim.base_lr": [1e-3, 3e-3], "seed": [0, 1]},   # every combination
     "zip": {"model.mask_ratio": [0.5, 0.75], "num_epochs": [10, 20]},  # taken row by row
     "metrics": ["fewshot/10shot", "reconstruction/loss"]}     # the table's columns

Every point is a config with those overrides, run in its own workdir under the sweep's
folder. All points are built (and their keys checked) before any runs; a point that fails is
reported and the others go on; a finished point (its `result.json`) is skipped on a rerun.
The sweep ends with `results.md` and `results.csv`: the final value of each metric per point.
"""

if __name__ == "__main__":  # the process is set up (allocator, libtpu) before JAX loads
  from mll_jax import command
  command.start()

import copy
import csv
import hashlib
import io
import itertools
import json
import sys
import traceback

from absl import app, flags

from mll_jax import config_files, train
from mll_jax.storage import locations

# --config (the base config) and --workdir (the sweep's folder; default runs/sweep-<hash>)
# are the trainer's own flags.
_SWEEP = flags.DEFINE_string("sweep", None, "Sweep file (defines get_sweep()).")


class SweepError(ValueError):
  """A sweep file that cannot be run as written; the message names the problem."""


def points(sweep: dict) -> list[dict]:
  """The override dicts of every point: the grid's product, times the zip's rows."""
  unknown = set(sweep) - {"grid", "zip", "metrics"}
  if unknown:
    raise SweepError(f"Sweep file: unknown entries {sorted(unknown)}; use grid, zip, metrics.")
  grid, zipped = sweep.get("grid", {}), sweep.get("zip", {})
  lengths = {len(v) for v in zipped.values()}
  if len(lengths) > 1:
    raise SweepError(f"Sweep file: every 'zip' list must have the same length, got "
                     f"{ {k: len(v) for k, v in zipped.items()} }.")
  rows = [dict(zip(zipped, values)) for values in zip(*zipped.values())] if zipped else [{}]
  combos = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
  return [{**combo, **row} for combo in combos for row in rows]


def apply_overrides(config, overrides: dict):
  """A copy of `config` with dotted-key overrides; a key the config lacks is a SweepError."""
  config = copy.deepcopy(config)
  for key, value in overrides.items():
    target = config
    *parents, leaf = key.split(".")
    for part in parents:
      if part not in target:
        raise SweepError(f"Sweep key {key!r}: the config has no {part!r}.")
      target = target[part]
    if leaf not in target:
      raise SweepError(f"Sweep key {key!r}: the config has no {leaf!r} there.")
    target[leaf] = tuple(value) if isinstance(target[leaf], tuple) else value
  return config


def point_name(index: int, overrides: dict) -> str:
  """`007-optim.base_lr=0.001-seed=1`, made safe for a folder name."""
  text = "-".join(f"{k}={v}" for k, v in overrides.items())
  safe = "".join(c if c.isalnum() or c in "._=-" else "_" for c in text)[:120]
  return f"{index:03d}-{safe}" if safe else f"{index:03d}"


def final_metrics(workdir) -> dict:
  """The last value of every metric in a run's metrics.jsonl."""
  values = {}
  path = workdir / "metrics.jsonl"
  if path.exists():
    for line in path.read_text().splitlines():
      values.update(json.loads(line))
  return values


def run_sweep(config, sweep: dict, workdir, run_fn=train.run) -> list[dict]:
  """Runs every point not yet finished, in `workdir` (a local folder, gs:// or s3://); returns
  one row a point (status, overrides, metrics)."""
  workdir = locations.location(workdir)
  overrides_list = points(sweep)
  configs = [apply_overrides(config, o) for o in overrides_list]  # fail before any point runs
  metric_names = list(sweep.get("metrics", []))
  rows = []
  for index, (overrides, point_config) in enumerate(zip(overrides_list, configs)):
    point_dir = workdir / point_name(index, overrides)
    result_file = point_dir / "result.json"
    row = {"point": point_dir.name, **{k: str(v) for k, v in overrides.items()}}
    if result_file.exists():
      row.update(json.loads(result_file.read_text()), status="done (skipped)")
    else:
      print(f"[sweep] point {index + 1}/{len(configs)}: {overrides}", flush=True)
      try:
        run_fn(point_config, point_dir)
      except train.Preempted:  # the whole sweep was asked to stop; a rerun resumes it
        raise
      except Exception as e:  # a failed point is reported; the others still run
        row.update(status=f"failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
        print(f"[sweep] point {index + 1} failed:\n{traceback.format_exc()}", flush=True)
        rows.append(row)
        continue
      metrics = {k: final_metrics(point_dir).get(k) for k in metric_names}
      result_file.write_text(json.dumps(metrics))
      row.update(metrics, status="done")
    rows.append(row)
  write_tables(rows, workdir, list(overrides_list[0]) if overrides_list else [], metric_names)
  return rows


def write_tables(rows: list[dict], workdir, keys: list[str], metrics: list[str]) -> None:
  """`results.csv` and `results.md` with one row a point."""
  columns = ["point", *keys, *metrics, "status"]
  if not locations.is_remote(workdir):
    workdir.mkdir(parents=True, exist_ok=True)
  table = io.StringIO(newline="")
  writer = csv.DictWriter(table, fieldnames=columns, extrasaction="ignore")
  writer.writeheader()
  writer.writerows(rows)
  (workdir / "results.csv").write_text(table.getvalue())
  fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else ("" if v is None else str(v))
  lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
  lines += ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
  (workdir / "results.md").write_text("\n".join(lines) + "\n")
  print("\n".join(lines), flush=True)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  train.setup_runtime()
  if not _SWEEP.value:
    raise app.UsageError("--sweep=SWEEP_FILE is required.")
  try:
    sweep = config_files.load(_SWEEP.value).get_sweep()
    config = train.CONFIG_FLAG.value
    digest = hashlib.sha256((train.config_json(config).__repr__() + repr(sweep)).encode())
    workdir = train.WORKDIR_FLAG.value or f"runs/sweep-{digest.hexdigest()[:8]}"
    rows = run_sweep(config, sweep, workdir)
  except (SweepError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  except train.Preempted as e:
    print(f"{e} (the sweep resumes from there)", flush=True)
    sys.exit(0)
  failed = [r for r in rows if r["status"].startswith("failed")]
  print(f"[sweep] {len(rows) - len(failed)} of {len(rows)} points done; tables in {workdir}")
  sys.exit(1 if failed else 0)


if __name__ == "__main__":
  app.run(main)
