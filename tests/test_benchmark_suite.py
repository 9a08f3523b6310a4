"""The benchmark suite end to end in its smoke mode: every tracked benchmark runs and reports its
figures and ratios into one markdown report; a failing benchmark is reported, not fatal."""

import re
import subprocess
import sys

import pytest

from benchmarks import suite
from conftest import REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.study]


def sections(report: str) -> dict:
  """The report's `## ` sections by heading, each its lines."""
  found, heading = {}, None
  for line in report.splitlines():
    if line.startswith("## "):
      heading = line[3:]
      found[heading] = []
    elif heading:
      found[heading].append(line)
  return found


def test_quick_suite_reports_every_benchmark(tmp_path, subprocess_env):
  out = tmp_path / "report.md"
  proc = subprocess.run([sys.executable, "-m", "benchmarks.run", "--quick", f"--out={out}"],
                        cwd=REPO_ROOT, env=subprocess_env, capture_output=True, text=True,
                        timeout=1200)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  report = out.read_text()
  found = sections(report)
  assert "Machine" in found and "jax " in report and "Failed" not in report
  benchmark_sections = [lines for heading, lines in found.items() if heading != "Machine"]
  # One section a benchmark (the MAE step twice: two allocators), each with a positive figure
  # and a positive ratio against its own baseline.
  assert len(benchmark_sections) == len(suite.BENCHMARKS), list(found)
  for lines in benchmark_sections:
    figures = [l for l in lines if l.startswith("| ") and not l.startswith(("| ratio", "| figure"))]
    ratios = [float(m.group(1)) for l in lines
              if (m := re.match(r"\| ratio .* \| \*\*([0-9.]+)x\*\* \|", l))]
    assert figures and ratios and min(ratios) > 0, lines
  assert "allocator system;" in report  # the second MAE step ran on glibc's allocator


def test_a_failing_benchmark_is_reported_and_the_suite_exits_nonzero(tmp_path, subprocess_env):
  out = tmp_path / "report.md"
  env = dict(subprocess_env, TFDS_DATA_DIR=str(tmp_path / "no_such" / "file"))
  (tmp_path / "no_such").write_text("a file where the data folder should be")
  proc = subprocess.run([sys.executable, "-m", "benchmarks.run", "--quick",
                         "--only=input_pipeline,chco_solve", f"--out={out}"], cwd=REPO_ROOT,
                        env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 1, proc.stdout + proc.stderr
  found = sections(out.read_text())
  failed = [h for h, lines in found.items() if any("**Failed**" in l for l in lines)]
  assert len(failed) == 1 and "`benchmarks/input_pipeline.py`" in failed[0], found
  chco = next(lines for h, lines in found.items() if "chco_solve" in h)
  assert any(l.startswith("| ratio ") for l in chco)
