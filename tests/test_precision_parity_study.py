"""experiments/precision_parity.py's --quick mode runs every point in float32 and bfloat16 and
writes its table with a verdict per metric."""

import csv
import subprocess
import sys

import pytest

from conftest import REPO_ROOT, TEST_CACHE

pytestmark = [pytest.mark.slow, pytest.mark.study]


def test_quick_precision_parity_writes_the_table(tmp_path, subprocess_env):
  out = tmp_path / "results"
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.precision_parity", "--quick", "--seeds=1",
       f"--out={out}", f"--study_dir={tmp_path / 'runs'}", f"--compilation_cache={TEST_CACHE}"],
      cwd=REPO_ROOT, env=subprocess_env, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  table = (out / "precision_parity_quick.md").read_text()
  for metric in ("fewshot/10shot", "reconstruction/loss", "classification/accuracy"):
    rows = [line for line in table.splitlines() if f"| {metric} |" in line]
    assert len(rows) == 1
    # | run | metric | float32 | bfloat16 | difference | seed spread | verdict |: the verdict
    # follows the row's own numbers (one seed: a spread of 0, so parity means no difference).
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    difference, spread, verdict = float(cells[4]), float(cells[5]), cells[6]
    assert spread == 0.0
    assert verdict == ("within the seed spread" if abs(difference) <= spread else "**outside**")
  # The fine-tune point's baselines are the baselines study's seed-0 rows at 10% labels.
  rows = list(csv.DictReader((REPO_ROOT / "experiments/results/baselines.csv").open()))
  for method, label in (("knn_pixels", "1-NN on pixels"), ("cnn", "small CNN")):
    seed0 = next(float(r["accuracy"]) for r in rows
                 if (r["method"], r["fraction"], r["seed"]) == (method, "10%", "0"))
    assert f"- {label}" in table and f"{seed0:.4f} ± 0.0000" in table, table
  # Each run's config asked for its dtype.
  configs = sorted((tmp_path / "runs").glob("*/config.json"))
  assert len(configs) == 4
  assert sum('"dtype": "bfloat16"' in c.read_text() for c in configs) == 2

  # A subset of points reuses the finished runs and writes its own report, leaving the full one.
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.precision_parity", "--quick", "--seeds=1",
       "--points=finetune", f"--out={out}", f"--study_dir={tmp_path / 'runs'}",
       f"--compilation_cache={TEST_CACHE}"],
      cwd=REPO_ROOT, env=subprocess_env, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  subset = (out / "precision_parity_finetune_quick.md").read_text()
  assert "| classification/accuracy |" in subset and "fewshot" not in subset
  assert "1-NN on pixels" in subset and "no pixel baseline" not in subset
  assert "The MAE point's metrics are on the pre-training holdout" in table
  assert (out / "precision_parity_quick.md").read_text() == table
  assert len(sorted((tmp_path / "runs").glob("*/config.json"))) == 4

  # Another policy against the same float32 runs: only its own run trains.
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.precision_parity", "--quick", "--seeds=1",
       "--points=finetune", "--narrow=bfloat16_matmul", f"--out={out}",
       f"--study_dir={tmp_path / 'runs'}", f"--compilation_cache={TEST_CACHE}"],
      cwd=REPO_ROOT, env=subprocess_env, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  narrow = (out / "precision_parity_bfloat16_matmul_finetune_quick.md").read_text()
  assert narrow.startswith("# bfloat16_matmul vs float32")
  assert "| float32 | bfloat16_matmul | difference |" in narrow
  configs = sorted((tmp_path / "runs").glob("*/config.json"))
  assert len(configs) == 5 and sum('"dtype": "bfloat16_matmul"' in c.read_text()
                                   for c in configs) == 1


def test_an_unknown_point_is_refused_before_anything_trains(tmp_path, subprocess_env):
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.precision_parity", "--points=mae,vit",
       f"--study_dir={tmp_path / 'runs'}", f"--out={tmp_path}"],
      cwd=REPO_ROOT, env=subprocess_env, capture_output=True, text=True, timeout=300)
  assert proc.returncode != 0
  assert "--points: unknown ['vit']; known: ['finetune', 'mae']" in proc.stderr
  assert not (tmp_path / "runs").exists()
