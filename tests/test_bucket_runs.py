"""Training with its workdir in a bucket (gs:// on the GCS emulator, s3:// on moto): a SIGKILLed
run resumes bitwise equal to an uninterrupted run, two processes checkpoint to gs:// and resume,
and a missing bucket or missing credentials stop the run with one message."""

import json
import signal
import subprocess
import sys
import time
import uuid

import pytest

from mll_jax import checkpoint  # noqa: F401  (teaches orbax s3:// before the reads below)
from mll_jax.storage import locations, objects
from conftest import REPO_ROOT
from test_multiprocess import RUN as MULTIPROCESS_RUN, _free_port, _read_params as _read_any
from test_train import (MU_ARGS, STEPS, _assert_same, _read_params, uninterrupted)  # noqa: F401

pytestmark = [pytest.mark.slow, pytest.mark.integration]

ROOTS = {"gs": "gs://bucket-one", "s3": "s3://bucket-two"}


@pytest.fixture
def env(subprocess_env, buckets):
  return {**subprocess_env, **buckets}


def _launch(args, workdir, env):
  return subprocess.Popen([sys.executable, "-m", "mll_jax.train", *args, f"--workdir={workdir}"],
                          cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)


def _logged_steps(workdir) -> list[int]:
  text = objects.read(f"{workdir}/metrics.jsonl") or b""
  return [json.loads(line)["step"] for line in text.decode().splitlines()
          if "loss" in json.loads(line)]


def _committed_checkpoints(workdir) -> list[int]:
  """Steps whose checkpoint carries orbax's commit file (a bucket has no rename to wait for)."""
  folder = f"{workdir}/checkpoints"
  return [int(n) for n in objects.names(folder)
          if n.isdigit() and objects.read(f"{folder}/{n}/commit_success.txt") is not None]


def _kill_after_a_checkpoint(procs, workdir, step, timeout=300):
  deadline = time.time() + timeout
  while time.time() < deadline:
    if max(_logged_steps(workdir), default=0) >= step and _committed_checkpoints(workdir):
      for proc in procs:
        proc.send_signal(signal.SIGKILL)
      return [proc.communicate(timeout=60)[0] for proc in procs]
    for proc in procs:
      if proc.poll() is not None:
        raise AssertionError(f"run ended early:\n{proc.stdout.read()}")
    time.sleep(0.2)
  raise AssertionError("the run did not reach the step in time")


@pytest.mark.parametrize("scheme", ["gs", "s3"])
def test_a_killed_bucket_run_resumes_bitwise(scheme, env, uninterrupted):  # noqa: F811
  workdir = f"{ROOTS[scheme]}/{uuid.uuid4().hex}/run"
  args = [*MU_ARGS, *STEPS, "--workdir_lease_s=2"]
  _kill_after_a_checkpoint([_launch(args, workdir, env)], workdir, 8)
  saved = _committed_checkpoints(workdir)
  assert saved and saved[-1] < 24, saved

  # The killed run's lease lapses 2 s after its last renewal; starting JAX takes longer.
  proc = _launch(args, workdir, env)
  out, _ = proc.communicate(timeout=600)
  assert proc.returncode == 0, out
  assert f"Resumed from the checkpoint at step {max(saved)}" in out
  _assert_same(_read_params(locations.location(workdir), 24), _read_params(uninterrupted, 24))
  assert _logged_steps(workdir) == sorted(set(_logged_steps(workdir)))  # no step twice
  assert objects.names(f"{workdir}/tensorboard")


def test_a_second_run_on_a_live_bucket_workdir_stops(env, tmp_path):
  workdir = f"{ROOTS['s3']}/{uuid.uuid4().hex}/run"
  from mll_jax.storage import lease
  held = lease.Lease(workdir, 0, ttl_s=60)
  try:
    proc = _launch([*MU_ARGS, "--config.total_steps=2"], workdir, env)
    out, _ = proc.communicate(timeout=300)
  finally:
    held.release()
  assert proc.returncode == 2, out
  assert "is in use by another run" in out and "pid" in out
  assert objects.names(f"{workdir}/checkpoints") == []


def test_two_processes_checkpoint_to_gs_and_resume_bitwise(env, tmp_path):
  """The pod's case: two processes (4 fake devices each), one gs:// workdir, SIGKILLed after a
  checkpoint and relaunched, end equal to the same two processes run without interruption."""
  def launch_pair(workdir):
    address = f"localhost:{_free_port()}"
    return [_launch([*MULTIPROCESS_RUN, "--config.total_steps=24",
                     "--config.checkpoint.every_steps=3", "--workdir_lease_s=2",
                     "--cpu_devices=4", f"--coordinator_address={address}",
                     "--num_processes=2", f"--process_id={i}"], workdir, env) for i in range(2)]

  def finish(procs):
    outputs = [proc.communicate(timeout=600)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outputs
    return outputs

  reference = tmp_path / "uninterrupted"
  finish(launch_pair(reference))
  workdir = f"{ROOTS['gs']}/{uuid.uuid4().hex}/pod"
  _kill_after_a_checkpoint(launch_pair(workdir), workdir, 4)
  saved = _committed_checkpoints(workdir)
  assert saved and saved[-1] < 24, saved
  outputs = finish(launch_pair(workdir))
  assert f"Resumed from the checkpoint at step {max(saved)}" in outputs[0]
  _assert_same(_read_any(locations.location(workdir), 24), _read_any(reference, 24))


@pytest.mark.parametrize("case, message", [
    ("no_bucket", "The bucket does not exist"),
    ("no_credentials", "credentials are missing or refused"),
])
def test_storage_faults_stop_the_run_with_one_message(case, message, env, tmp_path):
  env = dict(env)
  workdir = f"{ROOTS['s3']}/{uuid.uuid4().hex}/run"
  if case == "no_bucket":
    workdir = f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/run"
  else:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
      env.pop(key)
    empty = tmp_path / "no_credentials"
    empty.write_text("")
    env.update(AWS_SHARED_CREDENTIALS_FILE=str(empty), AWS_CONFIG_FILE=str(empty),
               AWS_EC2_METADATA_DISABLED="true")
  proc = _launch([*MU_ARGS, "--config.total_steps=2"], workdir, env)
  out, _ = proc.communicate(timeout=300)
  assert proc.returncode == 2, out
  errors = [line for line in out.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and message in errors[0], out
  assert "Traceback" not in out


def test_a_sweep_runs_in_a_bucket_and_its_rerun_skips_finished_points(make_config, buckets):
  from mll_jax import sweep, train
  config = make_config(total_steps=2, warmup_steps=1, **{"checkpoint.every_steps": 2})
  spec = {"grid": {"seed": [0]}, "metrics": ["reconstruction/loss"]}
  workdir = f"{ROOTS['s3']}/{uuid.uuid4().hex}/sweep"
  rows = sweep.run_sweep(config, spec, workdir)
  assert [r["status"] for r in rows] == ["done"]
  assert all(isinstance(r["reconstruction/loss"], float) for r in rows)
  assert "| point |" in (objects.read(f"{workdir}/results.md") or b"").decode()
  calls = []
  rows = sweep.run_sweep(config, spec, workdir,
                         run_fn=lambda cfg, point: calls.append(point) or train.run(cfg, point))
  assert calls == [] and [r["status"] for r in rows] == ["done (skipped)"]


def test_compile_only_takes_a_bucket_workdir(env):
  proc = _launch([*MU_ARGS, "--compile_only"], f"{ROOTS['gs']}/{uuid.uuid4().hex}/run", env)
  out, _ = proc.communicate(timeout=300)
  assert proc.returncode == 0 and "per device" in out.lower(), out


def test_a_damaged_bucket_checkpoint_is_set_aside_and_init_from_reads_a_bucket(
    make_config, make_finetune_config, buckets, capsys):
  from mll_jax import train
  workdir = f"{ROOTS['s3']}/{uuid.uuid4().hex}/run"
  config = lambda steps: make_config(total_steps=steps, warmup_steps=1,
                                     **{"checkpoint.every_steps": 2})
  train.run(config(4), workdir)
  objects.write(f"{workdir}/checkpoints/4/state/_METADATA", b"{ damaged")
  train.run(config(6), workdir)
  out = capsys.readouterr().out
  assert f"moved it to {workdir}/unreadable_checkpoints/4 and falling back to step 2" in out
  assert objects.read(f"{workdir}/unreadable_checkpoints/4/state/_METADATA") == b"{ damaged"
  assert _committed_checkpoints(workdir)[-1] == 6

  # s3 again: tensorboardX's GCS writer uploads once more when garbage-collected, which at
  # this process's exit (the servers gone) would retry for two minutes.
  finetuned = f"{ROOTS['s3']}/{uuid.uuid4().hex}/finetune"
  train.run(make_finetune_config(init_from=workdir, total_steps=2, warmup_steps=1), finetuned)
  assert f"Initialised params from {workdir}." in capsys.readouterr().out
  assert _committed_checkpoints(finetuned) == [2]
