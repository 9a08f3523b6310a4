"""Reuse of a study's runs on a rerun, only where they were trained as the study trains now.

A study names its runs by method, fraction and seed, so a rerun after a recipe change (a new
budget, rate or layer decay in configs/) would otherwise report the old runs as the new
recipe's. Every run's workdir holds the config it was trained with (`config.json`, written by
the trainer at each start); a run is reused, or resumed, only when that config equals the one
the study would train now.
"""

import contextlib
import json
import pathlib

from mll_jax import train


class StaleRunError(RuntimeError):
  """A run folder holds a run of another config; the message names the keys and the fix."""


def changed_keys(saved: dict, current: dict, prefix: str = "") -> list[str]:
  """Dotted keys whose values differ between two nested config dicts, as `key: old -> new`."""
  changes = []
  for key in sorted(set(saved) | set(current)):
    old, new = saved.get(key, "<absent>"), current.get(key, "<absent>")
    if isinstance(old, dict) and isinstance(new, dict):
      changes += changed_keys(old, new, f"{prefix}{key}.")
    elif old != new:
      changes.append(f"{prefix}{key}: {old!r} -> {new!r}")
  return changes


def check_same_config(workdir: pathlib.Path, config) -> None:
  """Raises StaleRunError when `workdir` was started with a config other than `config`."""
  saved_path = workdir / "config.json"
  if not saved_path.exists():
    return
  # Through JSON both ways, so tuples and lists compare as the trainer saved them.
  current = json.loads(json.dumps(train.config_json(config)))
  changes = changed_keys(json.loads(saved_path.read_text()), current)
  if changes:
    shown = "; ".join(changes[:5]) + (f"; and {len(changes) - 5} more" if len(changes) > 5
                                      else "")
    raise StaleRunError(
        f"{workdir} holds a run of another config than this study's now ({shown}). Its result "
        "is not reused: delete that folder to train it with the current config, or give "
        "another --study_dir.")


def finished_result(workdir: pathlib.Path, config) -> dict | None:
  """The run's `result.json` if it finished with `config`; None if it has yet to (or to
  resume); StaleRunError if the folder holds a run of another config."""
  check_same_config(workdir, config)
  result = workdir / "result.json"
  return json.loads(result.read_text()) if result.exists() else None


@contextlib.contextmanager
def stale_runs_stop(script: str):
  """Turns a StaleRunError into one line on stderr and exit status 1 (no traceback)."""
  try:
    yield
  except StaleRunError as e:
    raise SystemExit(f"{script}: {e}") from None
