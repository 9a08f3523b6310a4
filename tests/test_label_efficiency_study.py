"""The label-efficiency study's --quick mode runs end to end and writes its table and plot."""

import csv
import os
import subprocess
import sys

from conftest import REPO_ROOT, TEST_CACHE


def test_quick_study_writes_table_csv_and_plot(tmp_path, subprocess_env):
  out = tmp_path / "results"
  proc = subprocess.run(
      [sys.executable, "experiments/label_efficiency.py", "--quick", f"--out={out}",
       f"--study_dir={tmp_path / 'runs'}", f"--compilation_cache={TEST_CACHE}"],
      cwd=REPO_ROOT, env=subprocess_env, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  table = (out / "label_efficiency_quick.md").read_text()
  for method in ("scratch", "mae_finetune", "mae_probe", "simclr_finetune", "distill"):
    assert f"| {method} |" in table
  rows = list(csv.DictReader((out / "label_efficiency_quick.csv").open()))
  assert len(rows) == 5 and all(0.0 <= float(r["accuracy"]) <= 1.0 for r in rows)
  assert (out / "label_efficiency_quick.png").stat().st_size > 1000
