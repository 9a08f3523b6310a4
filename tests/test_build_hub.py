"""experiments/build_hub.py --quick: pre-trains, trains three experts, builds pools, registers
and labels them, prints the hub table; a rerun skips what is done."""

import csv
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO_ROOT, TEST_CACHE, assert_is_a_plot
from mll_jax.hub import registry, task_data

from experiments import hub_build_report

pytestmark = [pytest.mark.slow, pytest.mark.study]


def test_quick_hub_build(tmp_path, subprocess_env, data_dir, monkeypatch):
  out = tmp_path / "results"
  command = [sys.executable, "-m", "experiments.build_hub", "--quick", f"--out={out}",
             f"--hub_dir={tmp_path / 'hub'}", f"--compilation_cache={TEST_CACHE}"]
  proc = subprocess.run(command, cwd=REPO_ROOT, env=subprocess_env, capture_output=True,
                        text=True, timeout=900)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  assert "3 models" in proc.stdout and "pets_plus@1" in proc.stdout
  # The report: every expert's test accuracy beside its validation curve on its holdout.
  report = (out / "hub_build_quick.md").read_text()
  for name in ("pets_plus", "farm", "savanna_plus"):
    row = next(line for line in report.splitlines() if line.startswith(f"| {name} |"))
    assert "animal_mnist" in row and "change over the last third" in row
    assert float(row.split(" | ")[5]) > 0.6  # 1-NN on pixels, 3 classes (chance 0.33)
  assert "experts reach the 0.93 target" in report
  assert_is_a_plot(out / "hub_build_quick_curves.png")
  hub = registry.Hub(tmp_path / "hub")
  assert [e.ref for e in hub.entries()] == ["farm@1", "pets_plus@1", "savanna_plus@1"]
  pools = hub.load_pools()
  for entry in hub.entries():
    assert hub.load_label(entry.ref)["responses"].shape == (len(pools.images),
                                                            len(entry.classes))
    assert all(entry.nodes)  # every animal class has its SDAG node
  assert all(problems == [] for problems in hub.verify().values())
  rerun = subprocess.run(command, cwd=REPO_ROOT, env=subprocess_env, capture_output=True,
                         text=True, timeout=900)
  assert rerun.returncode == 0 and len(registry.Hub(tmp_path / "hub").entries()) == 3
  # 1-NN on pixels scored on images a study passes (hub_scaling: its tasks' test images),
  # named by class: the run's own test images give the report's number; names swapped, less.
  monkeypatch.setenv("TFDS_DATA_DIR", data_dir)
  pets = tmp_path / "hub_runs" / "pets_plus"
  pets_classes = ["cat", "dog", "bird", "cow", "horse"]
  images, labels = task_data.task_images("animal_mnist", pets_classes)
  own = hub_build_report.pixel_knn(pets)
  row = next(line for line in report.splitlines() if line.startswith("| pets_plus |"))
  assert f"{own:.3f}" == row.split(" | ")[5]
  assert hub_build_report.pixel_knn(pets, (images, np.array(pets_classes)[labels])) == \
      pytest.approx(own)
  swapped = np.array(["dog", "cat", "bird", "cow", "horse"])[labels]
  assert hub_build_report.pixel_knn(pets, (images, swapped)) < own
  # Image by image against 1-NN: 1-NN's accuracy is the report's, the discordant counts make up
  # the difference; a run against itself is level, and against a run of other classes refused.
  paired = hub_build_report.against_baselines(pets, cnn_workdir=pets)
  assert paired["knn"] == pytest.approx(own) and paired["images"] == len(labels)
  assert (paired["vs_knn"]["a_only"] - paired["vs_knn"]["b_only"]) / paired["images"] == \
      pytest.approx(paired["run"] - paired["knn"])
  assert paired["cnn"] == paired["run"] and paired["vs_cnn"] == {"a_only": 0, "b_only": 0, "p": 1.0}
  with pytest.raises(ValueError, match="must train on the run's own classes"):
    hub_build_report.against_baselines(pets, cnn_workdir=tmp_path / "hub_runs" / "farm")
  # The baselines script: a small CNN per run on that run's split, in <runs_dir>_cnn.
  baselines = [sys.executable, "-m", "experiments.hub_baselines", "--quick", f"--out={out}",
               f"--runs_dir={tmp_path / 'hub_runs'}", f"--compilation_cache={TEST_CACHE}"]
  proc = subprocess.run(baselines, cwd=REPO_ROOT, env=subprocess_env, capture_output=True,
                        text=True, timeout=900)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  table = (out / "hub_baselines_quick.md").read_text()
  for name in ("pets_plus", "farm", "savanna_plus"):
    row = next(line for line in table.splitlines() if line.startswith(f"| {name} |"))
    assert "p = " in row.split(" | ")[8] and (tmp_path / "hub_runs_cnn" / name).is_dir()
  assert "| mae |" not in table  # the encoder is not a classifier
  empty = subprocess.run(baselines[:-2] + [f"--runs_dir={tmp_path / 'nothing'}"], cwd=REPO_ROOT,
                         env=subprocess_env, capture_output=True, text=True, timeout=300)
  assert empty.returncode != 0 and "holds no finished classifier runs" in empty.stderr

def test_quick_hub_scaling_study_on_a_quick_mixed_hub(tmp_path, subprocess_env):
  env = subprocess_env
  build = [sys.executable, "-m", "experiments.build_hub", "--quick", f"--hub_dir={tmp_path / 'hub'}",
           "--architectures=mixed", f"--out={tmp_path / 'results'}",
           f"--compilation_cache={TEST_CACHE}"]
  built = subprocess.run(build, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
  assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
  hub = registry.Hub(tmp_path / "hub")
  assert {e.ref: e.architecture["model"].get("family", "vit") for e in hub.entries()} == {
      "pets_plus@1": "vit", "farm@1": "cnn", "savanna_plus@1": "vit"}
  out = tmp_path / "results"
  proc = subprocess.run([sys.executable, "-m", "experiments.hub_scaling", "--quick",
                         f"--hub_dir={tmp_path / 'hub'}", f"--out={out}",
                         f"--compilation_cache={TEST_CACHE}"],
                        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  table = (out / "hub_scaling_quick.md").read_text()
  for part in ("| chco |", "| topk |", "| random |", "| single |", "| lambda |"):
    assert part in table
  # CHCO's picks over lambda are counted by family and model (`vit/mu models`, ...).
  assert "| vit/" in table
  rows = list(csv.DictReader((out / "hub_scaling_quick.csv").open()))
  assert {r["part"] for r in rows} == {"scaling", "baseline", "lambda"}
  assert all(r["families"] for r in rows if r["part"] == "lambda" and int(r["models"]))
  assert_is_a_plot(out / "hub_scaling_quick.png")
  # The report again from the saved results, against another study of the same tasks (here
  # itself); a --compare_to that is not a file is refused before anything runs.
  again = [sys.executable, "-m", "experiments.hub_scaling", "--quick", f"--out={out}",
           f"--hub_dir={tmp_path / 'hub'}"]
  proc = subprocess.run(again + ["--report_only", f"--compare_to={out / 'hub_scaling_quick.json'}"],
                        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  assert "## Against `hub_scaling_quick.json`" in (out / "hub_scaling_quick.md").read_text()
  proc = subprocess.run(again + [f"--compare_to={tmp_path / 'missing.json'}"], cwd=REPO_ROOT,
                        env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode != 0 and "missing.json is not a file" in proc.stderr
