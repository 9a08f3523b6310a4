"""Multi-process training on JAX's distributed runtime: two processes on localhost (4 fake CPU
devices each, gloo collectives) form one 8-device mesh, train 3 MAE steps to the same losses
as one 8-device process with the same global batch, checkpoint, and the checkpoint resumes in
a single process. Also: the launch settings' bad inputs and `--compile_only`."""

import json
import socket
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from mll_jax import multihost
from conftest import REPO_ROOT, TEST_CACHE
from test_train import MU_ARGS, _flat

pytestmark = [pytest.mark.slow, pytest.mark.integration]

RUN = MU_ARGS + ["--config.total_steps=3", "--config.log_steps=1",
                 "--config.checkpoint.every_steps=3"]


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _train(workdir, env, extra, timeout=600):
  return subprocess.Popen([sys.executable, "-m", "mll_jax.train", *RUN, *extra,
                           f"--workdir={workdir}"], cwd=REPO_ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc, timeout=600) -> str:
  out, _ = proc.communicate(timeout=timeout)
  assert proc.returncode == 0, out
  return out


def _read_params(workdir, step) -> dict:
  """Stored params as numpy, whatever devices and processes wrote them."""
  path = workdir / "checkpoints" / str(step) / "state"
  checkpointer = ocp.PyTreeCheckpointer()
  tree = checkpointer.metadata(path).item_metadata.tree
  as_numpy = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
  restored = checkpointer.restore(path, args=ocp.args.PyTreeRestore(restore_args=as_numpy))
  return _flat(restored["params"])


def _losses(workdir) -> dict[int, float]:
  lines = (workdir / "metrics.jsonl").read_text().splitlines()
  return {m["step"]: m["loss"] for m in map(json.loads, lines) if "loss" in m}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, subprocess_env):
  """The same 3-step run on one 8-device process and on two 4-device processes."""
  root = tmp_path_factory.mktemp("multiprocess")
  single = _train(root / "single", subprocess_env, ["--cpu_devices=8"])
  _finish(single)
  address = f"localhost:{_free_port()}"
  workers = [_train(root / "two", subprocess_env,
                    ["--cpu_devices=4", f"--coordinator_address={address}",
                     "--num_processes=2", f"--process_id={i}"]) for i in range(2)]
  outputs = [_finish(w) for w in workers]
  return root, outputs


def test_two_processes_form_one_mesh_and_match_one_process(runs):
  root, outputs = runs
  assert "on 8 cpu device(s)" in outputs[0]
  assert "step 3:" in outputs[0] and "step 3:" not in outputs[1]  # process 0 reports alone
  single, two = _losses(root / "single"), _losses(root / "two")
  assert sorted(two) == [1, 2, 3]
  np.testing.assert_allclose([two[s] for s in (1, 2, 3)], [single[s] for s in (1, 2, 3)],
                             rtol=1e-5)
  # Params to 1e-5: the two layouts sum gradients in another order, and AdamW's normalised
  # update turns last-bit differences of near-zero gradients into ~1e-6 steps.
  got, expected = _read_params(root / "two", 3), _read_params(root / "single", 3)
  assert got.keys() == expected.keys()
  for key in expected:
    np.testing.assert_allclose(got[key], expected[key], rtol=1e-4, atol=1e-5, err_msg=key)


def test_two_process_checkpoint_resumes_in_one_process(runs, subprocess_env):
  root, _ = runs
  # Both runs go on to step 5 in one process. The same global batches and masks follow, so
  # steps 4-5 give the same losses; params stay within AdamW's step size of each other (the
  # first 3 steps summed gradients in another order).
  more = ["--cpu_devices=8", "--config.total_steps=5"]
  out = _finish(_train(root / "two", subprocess_env, more))
  assert "Resumed from the checkpoint at step 3" in out
  assert "written by another number of processes" in out
  _finish(_train(root / "single", subprocess_env, more))
  two, single = _losses(root / "two"), _losses(root / "single")
  assert sorted(two) == [1, 2, 3, 4, 5]
  np.testing.assert_allclose([two[4], two[5]], [single[4], single[5]], rtol=1e-4)
  got, expected = _read_params(root / "two", 5), _read_params(root / "single", 5)
  for key in expected:
    np.testing.assert_allclose(got[key], expected[key], rtol=1e-3, atol=5e-5, err_msg=key)


@pytest.mark.parametrize("args, message", [
    (dict(coordinator_address="localhost"), "needs a port"),
    (dict(coordinator_address="localhost:1234", num_processes=2), "needs --num_processes"),
    (dict(coordinator_address="localhost:1234", num_processes=2, process_id=2),
     "must be in 0..1"),
    (dict(num_processes=2, process_id=1), "without --coordinator_address"),
    (dict(cluster="kubernetes"), "is not known"),
])
def test_bad_launch_settings_are_named(args, message, monkeypatch):
  for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
    monkeypatch.delenv(name, raising=False)
  with pytest.raises(multihost.LaunchError, match=message):
    multihost.launch_settings(**args)


def test_launch_settings_from_the_environment(monkeypatch):
  monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "10.0.0.1:1234")
  monkeypatch.setenv("JAX_NUM_PROCESSES", "4")
  monkeypatch.setenv("JAX_PROCESS_ID", "3")
  assert multihost.launch_settings() == {"coordinator_address": "10.0.0.1:1234",
                                         "num_processes": 4, "process_id": 3}
  monkeypatch.setenv("JAX_PROCESS_ID", "three")
  with pytest.raises(multihost.LaunchError, match="JAX_PROCESS_ID"):
    multihost.launch_settings()
  for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
    monkeypatch.delenv(name)
  assert multihost.launch_settings() is None
  assert multihost.launch_settings(cluster="auto") == {"cluster_detection_method": None}


def test_a_bad_launch_exits_with_the_message(subprocess_env, tmp_path):
  proc = _train(tmp_path / "run", subprocess_env, ["--coordinator_address=localhost"])
  out, _ = proc.communicate(timeout=120)
  assert proc.returncode == 2 and "needs a port" in out
  assert not (tmp_path / "run").exists()


def test_compile_only_vit_b16_imagenet_on_64_fake_devices(subprocess_env, tmp_path):
  """The paper's ViT-B/16 MAE step, global batch 4096, FSDP over 64 devices: compiled with no
  ImageNet on disk and nothing run."""
  proc = subprocess.run(
      [sys.executable, "-m", "mll_jax.train", "--config=configs/mae.py:vit_b16,imagenet2012",
       "--config.mesh=((\"data\", 8), (\"fsdp\", 8))", "--cpu_devices=64", "--compile_only",
       f"--compilation_cache={TEST_CACHE}", f"--workdir={tmp_path / 'run'}"],
      cwd=REPO_ROOT, env=subprocess_env, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  out = proc.stdout
  assert "64 devices" in out and "Per-device memory:" in out, out
  memory = float(out.split("Per-device memory: ")[1].split(" GiB")[0])
  arguments = float(out.split("(arguments ")[1].split(" GiB")[0])
  # The ViT-B MAE train state (112 M params + two AdamW moments, float32) is 1.34 GB whole;
  # FSDP over 8 devices leaves an eighth (0.17 GB) plus the batch shard on each.
  assert 0.12 < arguments < 0.25, out
  assert arguments < memory < 64, out
  assert not (tmp_path / "run").exists()  # nothing written
