"""What every benchmark hands to the suite (`benchmarks/run.py`): its figures and ratios as
JSON, written when `--report_json=PATH` is given. Each benchmark still prints its own lines."""

import json
import pathlib

from absl import flags

_REPORT_JSON = flags.DEFINE_string(
    "report_json", None, "Also write the figures and ratios here as JSON (for benchmarks/run.py).")


def emit(title: str, setup: str, figures: dict[str, tuple[float, str]],
         ratios: dict[str, float]) -> None:
  """Writes `{title, setup, figures: {name: [value, unit]}, ratios: {name: value}}`.

  `setup` says what was measured on what (model, batch, devices, repeats) in one line.
  """
  if not _REPORT_JSON.value:
    return
  path = pathlib.Path(_REPORT_JSON.value)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps({"title": title, "setup": setup,
                              "figures": {k: [float(v), u] for k, (v, u) in figures.items()},
                              "ratios": {k: float(v) for k, v in ratios.items()}}, indent=1))
