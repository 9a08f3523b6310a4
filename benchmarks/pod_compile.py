"""Compile the paper-scale recipes for real TPU pod slices from this host and tabulate what the
TPU compiler says: HBM per chip against capacity, FLOPs per step, a roofline step time and an
MFU bound, and the compile time, for each remat / scan setting.

    python -m benchmarks.pod_compile [--topologies=v5p-128,v5e-256] [--out=docs/scaling_table.md]

Needs libtpu (`pip install "jax[tpu]"`, the same jax version). Each point is one
`python -m mll_jax.train --compile_only --topology=...` in a subprocess (a fresh compiler and
memory per point); the table is written as markdown for docs/scaling.md. Points of other
slices or recipes already in the table's `.json` are kept, so one slice can be added (or
recompiled) without compiling the others again.
"""

import json
import os
import pathlib
import re
import subprocess
import sys
import time

from absl import app, flags

REPO = pathlib.Path(__file__).resolve().parents[1]

from benchmarks.pod_table import merged, table  # noqa: E402

_TOPOLOGIES = flags.DEFINE_list("topologies", ["v5p-128", "v5e-256"], "Pod slices.")
_CASES = flags.DEFINE_list("cases", None, "Subset of CASES by name (default all).")
_OUT = flags.DEFINE_string("out", str(REPO / "docs" / "scaling_table.md"), "Markdown table.")
_TIMEOUT = flags.DEFINE_integer("timeout", 1800, "Seconds per compile.")

# name -> (config arg, overrides). The MAE recipes at the paper's batch 4096; the ViT-B
# fine-tune recipe at its batch 1024.
CASES = {
    "MAE ViT-B/16": ("configs/mae.py:vit_b16,imagenet2012", []),
    "MAE ViT-L/16": ("configs/mae.py:vit_l16,imagenet2012", []),
    "MAE ViT-H/14": ("configs/mae.py:vit_h14,imagenet2012", []),
    "Fine-tune ViT-B/16": ("configs/finetune.py:vit_b16,imagenet2012,labels=100%", []),
}
# (remat, scan_layers) settings compared for every case.
SETTINGS = (("none", False), ("none", True), ("dots_no_batch", True), ("full", True))
# Every chip in FSDP: parameters, gradients and optimizer state split over the whole slice.
MESH = '(("data", 1), ("fsdp", -1))'

_PATTERNS = {
    "compile_s": r"in ([\d.]+) s;",
    "hbm_gib": r"HBM per chip: ([\d.]+) GiB",
    "capacity_gib": r"HBM per chip: [\d.]+ GiB of ([\d.]+) GiB",
    "flops": r"FLOPs per step: ([\d.e+]+) per device",
    "step_ms": r"Roofline step time: ([\d.]+) ms",
}


def compile_point(config_arg: str, overrides: list, topology: str, remat: str,
                  scan: bool) -> dict:
  """One compile in a subprocess; the parsed report, or the error's last line."""
  command = [sys.executable, "-m", "mll_jax.train", f"--config={config_arg}", "--compile_only",
             f"--topology={topology}", f"--config.mesh={MESH}", f"--config.model.remat={remat}",
             f"--config.model.scan_layers={scan}", "--compilation_cache=", *overrides]
  env = dict(os.environ, JAX_PLATFORMS="cpu", TPU_SKIP_MDS_QUERY="1")
  started = time.time()
  done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                        timeout=_TIMEOUT.value)
  out = done.stdout + done.stderr
  point = {"wall_s": time.time() - started, "ok": done.returncode == 0}
  if not point["ok"]:
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    point["error"] = (errors or out.strip().splitlines()[-1:] or ["?"])[-1][:200]
    return point
  for key, pattern in _PATTERNS.items():
    match = re.search(pattern, out)
    point[key] = float(match.group(1)) if match else float("nan")
  return point


def main(argv):
  del argv
  names = _CASES.value or list(CASES)
  out = pathlib.Path(_OUT.value)
  raw = out.with_suffix(".json")
  earlier = json.loads(raw.read_text()) if raw.exists() else []
  points = []
  for name in names:
    config_arg, overrides = CASES[name]
    for topology in _TOPOLOGIES.value:
      for remat, scan in SETTINGS:
        point = compile_point(config_arg, overrides, topology, remat, scan)
        point.update(case=name, topology=topology, remat=remat, scan=scan)
        print(json.dumps(point), flush=True)
        points.append(point)
        # After each point, so a stopped run keeps what it compiled.
        _write(out, merged(earlier, points, tuple(CASES)))
  print(table(merged(earlier, points, tuple(CASES))))


def _write(out: pathlib.Path, points: list[dict]) -> None:
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(table(points) + "\n")
  out.with_suffix(".json").write_text(json.dumps(points, indent=1))


if __name__ == "__main__":
  app.run(main)
