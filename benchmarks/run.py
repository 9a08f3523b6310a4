"""The benchmark suite: every benchmark that tracks a target, one after another in its own
process, into one markdown report with the machine, the versions, each figure (a median over
repeats) and each ratio against the baseline measured in the same run.

    python -m benchmarks.run [--out=benchmarks/results/report.md] [--quick] [--only=a,b]

Benchmarks: mae_step (MAE train step and encoder inference vs the same model in PyTorch, both on
tcmalloc where it is installed; MFU on an accelerator), mae_step_system_malloc (the same on
glibc's allocator, PyTorch's default), input_pipeline (grain input images/s vs train step
images/s), labeling_throughput (hub labelling, jitted batches vs Python loops), chco_solve
(1,000 tasks batched vs one at a time vs a numpy reference), reuse_throughput (fused reuse
graph vs each model's own jitted function in turn) and reuse_mixed (the same on a selection of
ResNet-18s and ViTs of two sizes). One-off diagnoses live in `benchmarks/diagnostics/`, not
here. A benchmark that fails is reported as failed with its last output lines, and the others
still run. `--quick` shrinks every benchmark to a smoke run (the test suite runs it); its
figures mean nothing.
"""

import datetime
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time
from importlib import metadata

from absl import app, flags

from benchmarks.suite import BENCHMARKS, ENVIRONMENT

REPO = pathlib.Path(__file__).resolve().parents[1]

_OUT = flags.DEFINE_string("out", str(REPO / "benchmarks" / "results" / "report.md"),
                           "The markdown report.")
_QUICK = flags.DEFINE_bool("quick", False, "Smoke-sized runs (for tests).")
_ONLY = flags.DEFINE_list("only", None, "Run just these benchmarks.")
_TIMEOUT = flags.DEFINE_integer("timeout", 1800, "Seconds allowed per benchmark.")

PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "grain", "tensorflow-datasets",
            "numpy", "torch")


def machine() -> list[str]:
  """The machine's facts the figures depend on."""
  import jax
  cpu = platform.processor() or platform.machine()
  try:
    cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
               if line.startswith("model name"))
  except (OSError, StopIteration):
    pass
  devices = jax.devices()
  lines = [f"- CPU: {cpu}, {os.cpu_count()} cores visible",
           f"- JAX devices: {len(devices)} x {devices[0].device_kind} ({devices[0].platform})",
           f"- Python {platform.python_version()}, {platform.system()} {platform.release()}"]
  try:
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    lines.insert(1, f"- Memory: {pages / 2**30:.0f} GiB")
  except (ValueError, OSError):
    pass
  return lines


def versions() -> str:
  found = []
  for package in PACKAGES:
    try:
      found.append(f"{package} {metadata.version(package)}")
    except metadata.PackageNotFoundError:
      found.append(f"{package} (not installed)")
  return ", ".join(found)


def run_one(name: str, script: str, args: list[str], workdir: pathlib.Path,
            timeout: int) -> dict:
  """Runs `python -m benchmarks.<script>`; its JSON report (with `script`), or
  `{"failed": ...}` with its output tail."""
  result = workdir / f"{name}.json"
  started = time.perf_counter()
  try:
    proc = subprocess.run([sys.executable, "-m", f"benchmarks.{script}", *args,
                           f"--report_json={result}"], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout,
                          env={**os.environ, **ENVIRONMENT.get(name, {})})
    output, code = proc.stdout + proc.stderr, proc.returncode
  except subprocess.TimeoutExpired as e:
    output, code = f"{e.stdout or ''}{e.stderr or ''}\ntimed out after {timeout} s", -1
  seconds = time.perf_counter() - started
  print(f"[{name}] {'ok' if code == 0 else 'FAILED'} in {seconds:.0f} s", flush=True)
  if code != 0 or not result.exists():
    tail = "\n".join(str(output).strip().splitlines()[-8:])
    return {"failed": f"exit code {code}", "output": tail, "seconds": seconds, "script": script}
  return {**json.loads(result.read_text()), "seconds": seconds, "script": script}


def markdown(results: dict, quick: bool) -> str:
  """The report: machine, versions, and per benchmark its setup, figures and ratios."""
  now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
  lines = ["# mll_jax benchmark report", "",
           f"`python -m benchmarks.run{' --quick' if quick else ''}`, {now}."
           + (" **Quick (smoke) run: the figures mean nothing.**" if quick else ""), "",
           "## Machine", "", *machine(), f"- {versions()}", "",
           "Each figure is a median over repeated timed windows after a warm-up (compilation "
           "excluded); each ratio is against a baseline measured in the same run.", ""]
  for name, result in results.items():
    lines += [f"## {result.get('title', name)} (`benchmarks/{result['script']}.py`)", ""]
    if "failed" in result:
      lines += [f"**Failed** ({result['failed']}). Last output:", "", "```",
                result["output"], "```", ""]
      continue
    lines += [result["setup"] + f"; {result['seconds']:.0f} s in all.", "",
              "| figure | value |", "|---|---|"]
    for figure, (value, unit) in result["figures"].items():
      lines.append(f"| {figure} | {_format(value, unit)} |")
    for ratio, value in result["ratios"].items():
      shown = f"{value:.1%}" if ratio == "MFU" else f"**{value:.2f}x**"
      lines.append(f"| ratio {ratio} | {shown} |")
    lines.append("")
  return "\n".join(lines)


def _format(value: float, unit: str) -> str:
  if unit == "FLOP/s":
    return f"{value / 1e9:,.1f} GFLOP/s"
  return f"{value:,.3f} {unit}" if value < 10 else f"{value:,.0f} {unit}"


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  names = _ONLY.value or list(BENCHMARKS)
  unknown = [n for n in names if n not in BENCHMARKS]
  if unknown:
    raise app.UsageError(f"Unknown benchmark(s) {unknown}; known: {', '.join(BENCHMARKS)}.")
  results = {}
  with tempfile.TemporaryDirectory() as workdir:
    for name in names:
      script, full, quick = BENCHMARKS[name]
      results[name] = run_one(name, script, quick if _QUICK.value else full,
                              pathlib.Path(workdir), _TIMEOUT.value)
  out = pathlib.Path(_OUT.value)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(markdown(results, _QUICK.value) + "\n")
  print(f"Wrote {out}.")
  failed = [n for n, r in results.items() if "failed" in r]
  if failed:
    print(f"Failed: {', '.join(failed)}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  app.run(main)
