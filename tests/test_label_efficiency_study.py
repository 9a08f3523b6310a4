"""The label-efficiency study's --quick mode runs end to end and writes its table (with the
reference baselines beside), CSV, plot and validation learning curves."""

import csv
import subprocess
import sys

import pytest

from conftest import REPO_ROOT, TEST_CACHE, assert_is_a_plot

pytestmark = [pytest.mark.slow, pytest.mark.study]


def test_quick_study_writes_table_csv_plot_and_curves(tmp_path, subprocess_env):
  out = tmp_path / "results"
  out.mkdir()
  # As experiments/baselines.py writes it: the study prints these rows beside its own.
  (out / "baselines_quick.csv").write_text(
      "method,fraction,labelled,seed,accuracy\nknn_pixels,10%,720,0,0.25\ncnn,10%,720,0,0.5\n")
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.label_efficiency", "--quick", f"--out={out}",
       f"--study_dir={tmp_path / 'runs'}", f"--compilation_cache={TEST_CACHE}"],
      cwd=REPO_ROOT, env=subprocess_env, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  table = (out / "label_efficiency_quick.md").read_text()
  for method in ("scratch", "mae_finetune", "mae_probe", "simclr_finetune", "distill"):
    assert f"| {method} |" in table
  assert "| *baseline:* knn_pixels | 0.250 ± 0.000 |" in table
  assert "every method beats 1-NN on pixels (0.250)" in table
  rows = list(csv.DictReader((out / "label_efficiency_quick.csv").open()))
  assert len(rows) == 5
  for row in rows:  # one seed: the table's mean is the run's own accuracy
    assert f"| {row['method']} | {float(row['accuracy']):.3f} ± 0.000 |" in table, (row, table)
  # Every run's validation curve is in the table, and plotted.
  assert table.count("change over the last third") == 5
  assert_is_a_plot(out / "label_efficiency_quick.png")
  assert_is_a_plot(out / "label_efficiency_quick_curves.png")

  # The same command again reuses every run: the trainer saved the very config the study builds.
  metrics = tmp_path / "runs" / "scratch_10pct_seed0" / "metrics.jsonl"
  before = metrics.read_text()
  rerun = subprocess.run(proc.args, cwd=REPO_ROOT, env=subprocess_env, capture_output=True,
                         text=True, timeout=900)
  assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
  assert metrics.read_text() == before
  # Another holdout is another recipe: the study stops on the first run it would reuse.
  stale = subprocess.run([*proc.args, "--validation=0.2"], cwd=REPO_ROOT, env=subprocess_env,
                         capture_output=True, text=True, timeout=900)
  assert stale.returncode == 1
  assert "holds a run of another config" in stale.stderr
  assert "data.validation: 0.1 -> 0.2" in stale.stderr and "Traceback" not in stale.stderr
  assert metrics.read_text() == before


def test_quick_study_distils_a_cnn_teacher_into_a_vit_student(tmp_path, subprocess_env):
  out = tmp_path / "results"
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.label_efficiency", "--quick", "--model=cnn_s",
       "--methods=scratch", "--distill_student=mini", f"--out={out}",
       f"--study_dir={tmp_path / 'runs'}", f"--compilation_cache={TEST_CACHE}"],
      cwd=REPO_ROOT, env=subprocess_env, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  table = (out / "label_efficiency_quick_distill_mini.md").read_text()
  assert "distillation's student, a `mini` started at random" in table
  assert "| distill |" in table and "10%: scratch" in table  # scratch (cnn) is the teacher
  assert (tmp_path / "runs" / "distill_mini_10pct_seed0" / "result.json").exists()


@pytest.mark.parametrize("flag, message", [
    ("--distill_student=vit_q", "--distill_student=vit_q: unknown model; known: mu, mini"),
    ("--augment=shift+rotate", "--augment: config.data.augment='shift+rotate' has unknown "
                               "augmentation 'rotate'"),
    ("--teacher_ensemble=0", "--teacher_ensemble=0: expected a count of teachers, 1 or more"),
    ("--dtype=float16", "--dtype: config.model.dtype must be one of auto, float32, bfloat16, "
                        "bfloat16_matmul; got 'float16'"),
])
def test_a_bad_flag_is_refused_before_anything_trains(flag, message, tmp_path, subprocess_env):
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.label_efficiency", "--quick", flag,
       f"--study_dir={tmp_path / 'runs'}", f"--out={tmp_path}"],
      cwd=REPO_ROOT, env=subprocess_env, capture_output=True, text=True, timeout=300)
  assert proc.returncode != 0
  assert message in proc.stderr
  assert not (tmp_path / "runs").exists()
