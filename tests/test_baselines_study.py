"""The reference baselines' --quick mode runs end to end on the study's splits and writes its
table, CSV and learning curves."""

import csv
import subprocess
import sys

import pytest

from conftest import REPO_ROOT, TEST_CACHE, assert_is_a_plot

pytestmark = [pytest.mark.slow, pytest.mark.study]


def test_quick_baselines_write_table_csv_and_curves(tmp_path, subprocess_env):
  out = tmp_path / "results"
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.baselines", "--quick", f"--out={out}",
       f"--study_dir={tmp_path / 'runs'}", f"--compilation_cache={TEST_CACHE}"],
      cwd=REPO_ROOT, env=subprocess_env, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  table = (out / "baselines_quick.md").read_text()
  for method in ("knn_pixels", "logreg_pixels", "cnn"):
    assert f"| {method} |" in table
  # 10% of the 7,200 training images left after the 10% validation holdout.
  assert "| 10% | 720 |" in table
  rows = list(csv.DictReader((out / "baselines_quick.csv").open()))
  assert sorted(r["method"] for r in rows) == ["cnn", "knn_pixels", "logreg_pixels"]
  # 1-NN and logistic regression on pixels are far above chance (0.1) even at 10% of the labels.
  by_method = {r["method"]: float(r["accuracy"]) for r in rows}
  assert by_method["knn_pixels"] > 0.6 and by_method["logreg_pixels"] > 0.3, by_method
  assert_is_a_plot(out / "baselines_quick.png")
