"""Reliability (issue 15): one run per workdir (a lock the OS releases with its holder), every
numeric config value checked before anything is written, hub entry paths that stay inside the
entry, and a full disk during a checkpoint reported in one message with nothing lost. The hub
CLI's unknown classes and empty selections are in test_hub_cli.py."""

import json
import os
import signal
import subprocess
import sys

import pytest

from mll_jax import checkpoint, config_checks, train, workdir_lock
from conftest import REPO_ROOT

# --- one run per workdir ---------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.integration
def test_a_second_run_on_a_held_workdir_stops_naming_the_holder(make_config, tmp_path):
  workdir = tmp_path / "run"
  workdir.mkdir()
  with workdir_lock.hold(workdir):
    with pytest.raises(workdir_lock.WorkdirBusy, match=rf"in use by another run \(pid "
                                                        rf"{os.getpid()}\)"):
      train.run(make_config(total_steps=3), workdir)
  assert not (workdir / "checkpoints").exists() and not (workdir / "metrics.jsonl").exists()
  train.run(make_config(total_steps=3), workdir)  # released: the same workdir now trains
  assert (workdir / "checkpoints" / "3").is_dir()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
  holder = subprocess.Popen(
      [sys.executable, "-c", "import pathlib, sys, time\n"
       "from mll_jax import workdir_lock\n"
       f"with workdir_lock.hold(pathlib.Path({str(tmp_path)!r})):\n"
       "  print('held', flush=True)\n"
       "  sys.stdin.read()\n"],  # holds until killed
      cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
  assert holder.stdout.readline().strip() == "held"
  with pytest.raises(workdir_lock.WorkdirBusy, match=f"pid {holder.pid}"):
    with workdir_lock.hold(tmp_path):
      pass
  holder.send_signal(signal.SIGKILL)
  holder.wait()
  with workdir_lock.hold(tmp_path):  # the kernel dropped the dead holder's lock
    pass


def test_processes_of_one_run_lock_their_own_index(tmp_path):
  with workdir_lock.hold(tmp_path, process_index=0), workdir_lock.hold(tmp_path, 1):
    with pytest.raises(workdir_lock.WorkdirBusy):
      with workdir_lock.hold(tmp_path, process_index=1):
        pass


@pytest.mark.slow
@pytest.mark.integration
def test_the_cli_says_the_workdir_is_busy_in_one_line(subprocess_env, tmp_path):
  with workdir_lock.hold(tmp_path):
    done = subprocess.run([sys.executable, "-m", "mll_jax.train", "--config=configs/mae.py:mu",
                           "--config.total_steps=3", f"--workdir={tmp_path}"], cwd=REPO_ROOT,
                          env=subprocess_env, capture_output=True, text=True, timeout=600)
  assert done.returncode == 2
  errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and f"pid {os.getpid()}" in errors[0]
  assert "Traceback" not in done.stderr


# --- config values checked before anything is written ------------------------------------------

BAD_VALUES = [
    ("mae", {"optim.base_lr": -1.0}, "config.optim.base_lr=-1.0 is out of range: it must be a "
                                     "number >= 0"),
    ("mae", {"optim.weight_decay": -1.0}, "config.optim.weight_decay=-1.0"),
    ("finetune", {"label_smoothing": 2.0}, "config.label_smoothing=2.0 is out of range: it "
                                           "must be a number in [0, 1)"),
    ("mae", {"batch_size": 0}, "config.batch_size=0 is out of range: it must be an integer >= 1"),
    ("finetune", {"model.drop_path": 1.0}, "config.model.drop_path=1.0 is out of range"),
    ("mae", {"warmup_steps": 100, "total_steps": 2}, "config.warmup_steps=100 is not shorter "
                                                    "than config.total_steps=2"),
    ("finetune", {"total_steps": 0, "warmup_steps": 0, "num_epochs": 2.0, "warmup_epochs": 5.0},
     "config.warmup_epochs=5.0 is not shorter than config.num_epochs=2.0"),
    ("mae", {"optim.b2": 1.5}, "config.optim.b2=1.5"),
    ("mae", {"num_epochs": -3.0, "total_steps": 0}, "config.num_epochs=-3.0 is out of range"),
]


@pytest.mark.parametrize("file,overrides,message", BAD_VALUES,
                         ids=[",".join(o) for _, o, _ in BAD_VALUES])
def test_out_of_range_values_fail_before_anything_is_written(make_config, make_finetune_config,
                                                             tmp_path, file, overrides,
                                                             message):
  make = make_config if file == "mae" else make_finetune_config
  with pytest.raises(config_checks.ConfigRangeError, match=message.replace("(", r"\(")
                     .replace(")", r"\)").replace("[", r"\[")):
    train.run(make(**overrides), tmp_path / "run")
  assert not (tmp_path / "run").exists()


def test_the_docs_table_every_checked_key():
  page = (REPO_ROOT / "docs" / "training.md").read_text()
  for key, allowed in config_checks.RANGES.items():
    assert f"| `{key}` | {allowed.text()} |" in page, key


def test_ranges_reject_nan_bools_and_strings():
  assert not config_checks.Range(0).holds(float("nan"))
  assert not config_checks.Range(0).holds(True)
  assert not config_checks.Range(0).holds("1")
  assert not config_checks.Range(1, integer=True).holds(2.5)


# --- hub paths stay inside the hub -------------------------------------------------------------

HUB_ARCH = {"task": "supervised", "model": {"variant": "mu", "patch_size": 4, "pool": "gap"},
            "image_size": 28, "channels": 1, "num_classes": 3}


@pytest.fixture
def hub_with_entry(tmp_path):
  from mll_jax.hub import functional, registry
  hub = registry.Hub(tmp_path / "hub")
  hub.register("m", HUB_ARCH, functional.init_variables(HUB_ARCH, seed=0), ("a", "b", "c"))
  return hub, hub.entry_folder("m@1")


def _record_reads(monkeypatch) -> list[str]:
  """The paths the hub's checks read from now on."""
  from mll_jax.storage import objects
  opened, real_read = [], objects.read
  monkeypatch.setattr(objects, "read", lambda p: opened.append(str(p)) or real_read(p))
  return opened


def test_a_listed_path_that_leaves_the_entry_is_never_read(hub_with_entry, monkeypatch):
  from mll_jax.hub import registry
  hub, _ = hub_with_entry
  manifest = hub.manifest_path("m@1")
  entry = json.loads(manifest.read_text())
  entry["files"]["../../../../../../../../etc/passwd"] = "0" * 64
  manifest.write_text(json.dumps(entry))
  opened = _record_reads(monkeypatch)
  problems = hub.verify("m")["m@1"]
  assert "../../../../../../../../etc/passwd points outside the entry (not read)" in problems
  assert "its manifest was modified after it was committed" in problems
  assert opened and all(str(hub.directory) in path for path in opened)  # nothing outside
  with pytest.raises(registry.CorruptEntry):
    hub.load("m")


def test_a_symbolic_link_inside_an_entry_is_reported_not_followed(hub_with_entry, tmp_path,
                                                                  monkeypatch):
  from mll_jax.hub import registry
  hub, folder = hub_with_entry
  secret = tmp_path / "secret.txt"
  secret.write_text("not for the hub")
  (folder / "variables" / "innocent").symlink_to(secret)
  opened = _record_reads(monkeypatch)
  problems = hub.verify("m")["m@1"]
  assert ("variables/innocent is a symbolic link (not followed: an entry holds regular files "
          "only)") in problems
  assert str(secret) not in opened and not any(p.endswith("innocent") for p in opened)
  with pytest.raises(registry.CorruptEntry, match="symbolic link"):
    hub.load("m")


# --- a full disk during a checkpoint ------------------------------------------------------------


def _mount_tmpfs(path, size_bytes: int) -> bool:
  path.mkdir(parents=True, exist_ok=True)
  done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(path)],
                        capture_output=True)
  return done.returncode == 0


@pytest.mark.slow
@pytest.mark.integration
def test_a_full_tmpfs_stops_the_run_in_one_message_keeping_the_last_checkpoint(make_config,
                                                                                tmp_path):
  # Size one checkpoint on ordinary disk first, then give the run room for a few: orbax's
  # writes in flight take more than the finished checkpoint, so two can already fail.
  probe = tmp_path / "probe"
  train.run(make_config(total_steps=3, **{"checkpoint.every_steps": 3}), probe)
  one = sum(p.stat().st_size for p in (probe / "checkpoints" / "3").rglob("*") if p.is_file())
  disk = tmp_path / "small_disk"
  if not _mount_tmpfs(disk, int(one * 4) + 64 * 1024):
    pytest.skip("cannot mount a tmpfs here (not root); the simulated ENOSPC test covers it")
  try:
    workdir = disk / "run"
    config = make_config(total_steps=30, **{"checkpoint.every_steps": 3, "checkpoint.keep": 30})
    with pytest.raises(checkpoint.DiskFull, match=r"The disk is full: the checkpoint of step "
                                                  r"\d+ needs about [\d.]+ MiB in .* free\. "
                                                  r"The last good checkpoint \(step \d+\) is "
                                                  r"kept"):
      train.run(config, workdir)
    kept = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    assert kept and not list((workdir / "checkpoints").glob("*tmp*"))
    restored = checkpoint.Checkpointer(workdir, 3).latest_step()
    assert restored == max(kept)
  finally:
    subprocess.run(["umount", str(disk)], capture_output=True)


@pytest.mark.slow
def test_a_simulated_enospc_during_a_save_names_the_disk_and_keeps_older_checkpoints(
    make_config, tmp_path, monkeypatch):
  import errno
  workdir = tmp_path / "run"
  real_save = checkpoint.ocp.CheckpointManager.save

  def save(self, step, *args, **kwargs):
    if step >= 6:  # the second checkpoint's write fails for want of space
      (self.directory / f"{step}.orbax-checkpoint-tmp-123").mkdir()  # what orbax leaves
      raise OSError(errno.ENOSPC, "No space left on device")
    return real_save(self, step, *args, **kwargs)

  monkeypatch.setattr(checkpoint.ocp.CheckpointManager, "save", save)
  with pytest.raises(checkpoint.DiskFull, match=r"step 6 .* The last good checkpoint \(step 3\) "
                                                r"is kept"):
    train.run(make_config(total_steps=12, **{"checkpoint.every_steps": 3}), workdir)
  assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["3"]
