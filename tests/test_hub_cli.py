"""The hub's command line on a real expert run: pools, register (labelled), list, show, label,
verify (with a tampered file), remove, and clear errors."""

import subprocess
import sys

import pytest

from conftest import REPO_ROOT
from mll_jax import train
from mll_jax.hub import registry

pytestmark = [pytest.mark.slow, pytest.mark.integration]


@pytest.fixture(scope="module")
def expert_run(tmp_path_factory, data_dir):
  from conftest import small_classifier_config
  workdir = tmp_path_factory.mktemp("expert")
  train.run(small_classifier_config("expert", data_dir, classes="zebra,horse,cat"), workdir)
  return workdir


def _hub(hub_dir, env, *args, ok=True):
  proc = subprocess.run([sys.executable, "-m", "mll_jax.hub", f"--hub_dir={hub_dir}", *args],
                        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert (proc.returncode == 0) == ok, proc.stdout[-2000:] + proc.stderr[-3000:]
  return proc.stdout + proc.stderr


def test_hub_cli_end_to_end(expert_run, tmp_path, subprocess_env):
  hub_dir = tmp_path / "hub"
  out = _hub(hub_dir, subprocess_env, "pools", "--data=animal_mnist", "--cap=4")
  assert "Pools: 40 images" in out
  out = _hub(hub_dir, subprocess_env, "register", "equines", f"--workdir={expert_run}")
  assert "Registered equines@1: 3 classes" in out and "labelled" in out
  _hub(hub_dir, subprocess_env, "register", "equines", f"--workdir={expert_run}", "--nolabel")
  out = _hub(hub_dir, subprocess_env, "list")
  assert "equines@1" in out and "zebra,horse,cat" in out and "2 models" in out
  out = _hub(hub_dir, subprocess_env, "show", "equines@1")
  assert '"classes": [\n  "zebra",' in out and "head        zebra:" in out
  out = _hub(hub_dir, subprocess_env, "label", "equines")  # @2: labelled now
  assert "Model label of equines@2: 40 pool images" in out
  assert "equines@1: ok\nequines@2: ok" in _hub(hub_dir, subprocess_env, "verify")
  out = _hub(hub_dir, subprocess_env, "select", "--classes=zebra,horse,unicorn")
  assert "unicorn" in out and "uncovered (no concept matches this name)" in out
  assert "Selected (chco):" in out and "converged in" in out
  out = _hub(hub_dir, subprocess_env, "evaluate", "--classes=zebra,horse,cat",
             "--data=animal_mnist", "--method=topk")
  assert "Zero-shot accuracy on 600 animal_mnist test images of 3 classes:" in out
  out = _hub(hub_dir, subprocess_env, "rank", "--data=animal_mnist", "--labels=k=3")
  assert "logme on 30 labelled animal_mnist images:" in out and "equines@2" in out

  hub = registry.Hub(hub_dir)
  params = max((p for p in (hub.entry_folder("equines@1") / "variables").rglob("*")
                if p.is_file()), key=lambda p: p.stat().st_size)
  params.write_bytes(params.read_bytes() + b"x")
  out = _hub(hub_dir, subprocess_env, "verify", ok=False)
  assert "equines@1: " in out and "does not match its checksum" in out and "equines@2: ok" in out
  assert "Removed equines@1." in _hub(hub_dir, subprocess_env, "remove", "equines@1")
  assert [e.ref for e in hub.entries()] == ["equines@2"]


def test_hub_cli_errors_are_one_line(expert_run, tmp_path, subprocess_env):
  assert "error: No hub at" in _hub(tmp_path / "none", subprocess_env, "list", ok=False)
  hub_dir = tmp_path / "hub"
  out = _hub(hub_dir, subprocess_env, "register", "../evil", f"--workdir={expert_run}", ok=False)
  assert "error: Invalid model name '../evil'" in out and "Traceback" not in out
  out = _hub(hub_dir, subprocess_env, "register", "x", f"--workdir={tmp_path}", ok=False)
  assert "is not a training workdir" in out
  assert "is empty" in _hub(hub_dir, subprocess_env, "list")
  out = _hub(hub_dir, subprocess_env, "pools", "--data=animal_mnist", "--cap=2")
  out = _hub(hub_dir, subprocess_env, "select", "--classes=zebra,horse", ok=False)
  assert "error: The hub has no labelled models" in out


def test_evaluate_refuses_unknown_classes_and_empty_selections(expert_run, tmp_path,
                                                               subprocess_env):
  hub_dir = tmp_path / "hub"
  _hub(hub_dir, subprocess_env, "pools", "--data=animal_mnist", "--cap=4")
  _hub(hub_dir, subprocess_env, "register", "equines", f"--workdir={expert_run}")
  out = _hub(hub_dir, subprocess_env, "evaluate", "--classes=unicorn,cow",
             "--data=animal_mnist", ok=False)
  assert "error: animal_mnist has no class 'unicorn'; its classes:" in out
  assert "Traceback" not in out
  # A penalty no head's gain outweighs: nothing is kept, and no accuracy is reported.
  out = _hub(hub_dir, subprocess_env, "evaluate", "--classes=zebra,horse",
             "--data=animal_mnist", "--lam=1e6", ok=False)
  assert "Selected (chco): 0 model(s)" in out
  assert "error: No model was kept: at --lam=1e+06" in out and "keeps" in out
  assert "No accuracy is reported for an empty selection." in out
  assert "Zero-shot accuracy" not in out and "Traceback" not in out
  out = _hub(hub_dir, subprocess_env, "select", "--classes=zebra,horse", "--lam=1e6")
  assert "No model was kept" in out
