"""The trainer end to end: a short run, resume after SIGTERM / SIGKILL (bitwise), checkpoints
across device counts, damaged checkpoints, NaN guard, and each bad input the issue lists."""

import json
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from mll_jax import checkpoint, sharding, steps, train
from mll_jax.models import precision
from conftest import REPO_ROOT, TEST_CACHE

MU_ARGS = ["--config=configs/mae.py:mu", "--config.batch_size=16", "--config.log_steps=2",
           "--config.evals.reconstruction.num_examples=32", "--config.evals.fewshot.shots=(2,)",
           "--config.evals.fewshot.num_train_examples=200", "--config.evals.fewshot.seeds=1",
           "--config.evals.fewshot.num_test_examples=64", f"--compilation_cache={TEST_CACHE}"]


def _read_params(workdir: pathlib.Path, step: int) -> dict:
  """Stored params as `{"a/b/0/kernel": array}` (orbax returns list indices as str keys)."""
  restored = ocp.StandardCheckpointer().restore(workdir / "checkpoints" / str(step) / "state")
  return _flat(restored["params"])


def _flat(tree) -> dict:
  return {sharding.path_to_str(path): np.asarray(leaf)
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _assert_same(got: dict, expected: dict):
  assert got.keys() == expected.keys()
  for key in expected:
    np.testing.assert_array_equal(got[key], expected[key], err_msg=key)


def _metrics(workdir: pathlib.Path) -> list[dict]:
  path = workdir / "metrics.jsonl"
  return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _launch(workdir, env, extra=()):
  return subprocess.Popen([sys.executable, "-m", "mll_jax.train", *MU_ARGS, *extra,
                           f"--workdir={workdir}"], cwd=REPO_ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finished_checkpoints(workdir: pathlib.Path) -> list[int]:
  folder = workdir / "checkpoints"
  return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.is_dir() else []


def _wait_for_step(proc, workdir, step, timeout=300):
  """Waits until the run logged `step` and has at least one finished (renamed) checkpoint."""
  deadline = time.time() + timeout
  while time.time() < deadline:
    if (any(m["step"] >= step and "loss" in m for m in _metrics(workdir))
        and _finished_checkpoints(workdir)):
      return
    if proc.poll() is not None:
      raise AssertionError(f"run ended early:\n{proc.stdout.read()}")
    time.sleep(0.2)
  raise AssertionError("run did not reach the step in time")


STEPS = ["--config.total_steps=24", "--config.checkpoint.every_steps=6"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, subprocess_env):
  workdir = tmp_path_factory.mktemp("uninterrupted")
  proc = _launch(workdir, subprocess_env, STEPS)
  out, _ = proc.communicate(timeout=600)
  assert proc.returncode == 0, out
  return workdir


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_killed_run_resumes_to_bitwise_identical_params(sig, uninterrupted, tmp_path, subprocess_env):
  workdir = tmp_path / "run"
  proc = _launch(workdir, subprocess_env, STEPS)
  _wait_for_step(proc, workdir, 8)
  proc.send_signal(sig)
  out, _ = proc.communicate(timeout=120)
  if sig == signal.SIGTERM:
    assert proc.returncode == 0, out
    assert "SIGTERM: saved the checkpoint" in out
  else:
    assert proc.returncode == -signal.SIGKILL
  saved = _finished_checkpoints(workdir)
  assert saved and saved[-1] < 24, (saved, out)

  proc = _launch(workdir, subprocess_env, STEPS)
  out, _ = proc.communicate(timeout=600)
  assert proc.returncode == 0, out
  assert f"Resumed from the checkpoint at step {saved[-1]}" in out
  _assert_same(_read_params(workdir, 24), _read_params(uninterrupted, 24))


@pytest.mark.slow
@pytest.mark.integration
def test_default_run_reduces_the_loss_and_evaluates(uninterrupted):
  metrics = _metrics(uninterrupted)
  losses = [m["loss"] for m in metrics if "loss" in m]
  assert losses[-1] < losses[0]
  evals = [m for m in metrics if "fewshot/2shot" in m]
  assert [m["step"] for m in evals] == [0, 24]
  assert json.loads((uninterrupted / "config.json").read_text())["model"]["variant"] == "mu"


@pytest.mark.slow
@pytest.mark.integration
def test_rerunning_a_finished_run_does_nothing(uninterrupted, subprocess_env):
  before = (uninterrupted / "metrics.jsonl").read_text()
  proc = _launch(uninterrupted, subprocess_env, STEPS)
  out, _ = proc.communicate(timeout=300)
  assert proc.returncode == 0 and "already complete at step 24" in out
  assert (uninterrupted / "metrics.jsonl").read_text() == before


@pytest.mark.slow
@pytest.mark.integration
def test_unknown_config_key_is_named_before_anything_is_written(tmp_path, subprocess_env):
  workdir = tmp_path / "never"
  proc = _launch(workdir, subprocess_env, ["--config.optim.learning_rat=0.1"])
  out, _ = proc.communicate(timeout=120)
  assert proc.returncode != 0 and "learning_rat" in out
  assert not workdir.exists()


@pytest.mark.parametrize("override,message", [
    ({"data.name": "no_such_set"}, "Unknown data set 'no_such_set'"),
    ({"data.name": "cifar10"}, "'cifar10' is not prepared"),
    ({"data.image_size": 30}, "not divisible by the patch size 4"),
    ({"mesh": (("data", 16), ("fsdp", 1))}, "needs 16 devices but only 8"),
    ({"batch_size": 12}, "not divisible by the 8 devices"),
])
def test_bad_input_fails_clearly_and_writes_nothing(make_config, tmp_path, override, message):
  config = make_config(**override)
  with pytest.raises(ValueError, match=message):
    train.run(config, tmp_path / "run")
  assert not (tmp_path / "run").exists()


def test_workdir_that_is_a_file(make_config, tmp_path):
  path = tmp_path / "taken"
  path.write_text("not a folder")
  with pytest.raises(train.RunError, match="is a file"):
    train.run(make_config(), path)
  assert path.read_text() == "not a folder"


def _corrupt(step_dir: pathlib.Path):
  for f in (step_dir / "state").rglob("*"):
    if f.is_file() and f.stat().st_size > 1000:
      f.write_bytes(f.read_bytes()[: f.stat().st_size // 3])  # truncated


@pytest.mark.slow
def test_corrupted_checkpoint_falls_back_to_the_previous_one(make_config, tmp_path, capsys):
  workdir = tmp_path / "run"
  train.run(make_config(), workdir)  # 6 steps, checkpoints at 3 and 6
  _corrupt(workdir / "checkpoints" / "6")
  ckpt = checkpoint.Checkpointer(workdir, every_steps=3)
  step, state = ckpt.restore_latest(_abstract_state(make_config()), _iterator(make_config()))
  ckpt.close()
  assert step == 3
  printed = capsys.readouterr().out
  # The run's first line names the resolved compute-dtype policy, not the word "auto".
  assert f"compute dtype {precision.dtype_name('auto')}, allocator" in printed
  assert "Checkpoint at step 6" in printed and "falling back to step 3" in printed
  assert (workdir / "unreadable_checkpoints" / "6").is_dir()
  assert int(state["step"]) == 3


def _iterator(config):
  from mll_jax.data import pipeline, sources, transforms
  source = sources.data_source(sources.get_builder("animal_mnist", config.data.data_dir), "train")
  return pipeline.train_iterator(pipeline.train_dataset(
      source, local_batch_size=config.batch_size, seed=0,
      transform=transforms.TrainTransform(28, 1)))


def _abstract_state(config, devices=None):
  from mll_jax import optim, sharding, tasks
  from mll_jax.data import sources
  mesh = sharding.make_mesh(config.mesh, devices)
  info = sources.info(sources.get_builder(config.data.name, config.data.data_dir))
  tx = optim.make(config.optim, config.batch_size, 6, 2)
  return steps.build(tasks.get("mae"), config, info, tx, mesh).abstract_state


@pytest.mark.slow
@pytest.mark.parametrize("write_devices,read_devices", [(8, 1), (1, 8)], ids=["8to1", "1to8"])
def test_checkpoint_restores_on_another_device_count(make_config, tmp_path, write_devices,
                                                     read_devices):
  config = make_config(mesh=(("data", -1), ("fsdp", 2 if write_devices == 8 else 1)),
                       total_steps=3)
  train.run(config, tmp_path / "run", devices=jax.devices()[:write_devices])
  written = _read_params(tmp_path / "run", 3)

  read_config = make_config(mesh=(("data", -1), ("fsdp", 2 if read_devices == 8 else 1)))
  abstract = _abstract_state(read_config, jax.devices()[:read_devices])
  ckpt = checkpoint.Checkpointer(tmp_path / "run", every_steps=3)
  step, state = ckpt.restore_latest(abstract, _iterator(read_config))
  ckpt.close()
  assert step == 3
  kernel = state["params"]["decoder_pred"]["kernel"]
  assert len(kernel.sharding.device_set) == read_devices
  _assert_same(_flat(jax.device_get(state["params"])), written)


@pytest.mark.slow
def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_state(make_config, tmp_path):
  config = make_config(**{"optim.base_lr": 1e30, "total_steps": 12})
  with pytest.raises(train.RunError, match="NaN/Inf at step") as error:
    train.run(config, tmp_path / "run")
  assert "base_lr" in str(error.value)
  for step_dir in (tmp_path / "run" / "checkpoints").iterdir():
    if step_dir.name.isdigit():
      params = _read_params(tmp_path / "run", int(step_dir.name))
      assert all(np.isfinite(leaf).all() for leaf in params.values())


@pytest.mark.slow
def test_init_from_loads_params_and_rejects_another_architecture(make_config, tmp_path):
  source = tmp_path / "pretrained"
  train.run(make_config(total_steps=3), source)
  pretrained = _read_params(source, 3)
  target = tmp_path / "finetune"
  config = make_config(init_from=str(source), total_steps=1, warmup_steps=0, log_steps=1)
  config.optim.base_lr = 0.0
  train.run(config, target)
  _assert_same(_read_params(target, 1), pretrained)

  other = make_config(init_from=str(source), **{"model.decoder": "tiny"})
  with pytest.raises(checkpoint.CheckpointError, match="another architecture"):
    train.run(other, tmp_path / "other")


def test_workdir_of_another_architecture_is_refused_and_left_intact(make_config, tmp_path):
  workdir = tmp_path / "run"
  train.run(make_config(total_steps=3), workdir)
  before = _finished_checkpoints(workdir)
  with pytest.raises(checkpoint.CheckpointError, match="(?s)another architecture.*another --workdir"
                     ) as error:
    train.run(make_config(**{"model.decoder": "tiny"}), workdir)
  assert "decoder" in str(error.value)
  assert _finished_checkpoints(workdir) == before
  assert not (workdir / "unreadable_checkpoints").exists()


@pytest.mark.slow
def test_relative_workdir(make_config, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  train.run(make_config(total_steps=3), pathlib.Path("runs") / "relative")
  assert _finished_checkpoints(tmp_path / "runs" / "relative") == [3]
