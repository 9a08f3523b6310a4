"""On a host without TPU chips, libtpu's one-process lock is lifted by default, so a TPU-pod
compile can run beside another JAX process; on a TPU host it is left as libtpu sets it."""

import subprocess
import sys

from conftest import REPO_ROOT
from mll_jax import libtpu_lock


def test_the_lock_is_lifted_only_without_chips(monkeypatch):
  monkeypatch.setattr(libtpu_lock, "host_has_tpu_chips", lambda: False)
  environ = {}
  libtpu_lock.allow_libtpu_without_chips(environ)
  assert environ == {"ALLOW_MULTIPLE_LIBTPU_LOAD": "1"}
  chosen = {"ALLOW_MULTIPLE_LIBTPU_LOAD": "0"}  # a user's own choice stays
  libtpu_lock.allow_libtpu_without_chips(chosen)
  assert chosen == {"ALLOW_MULTIPLE_LIBTPU_LOAD": "0"}
  monkeypatch.setattr(libtpu_lock, "host_has_tpu_chips", lambda: True)
  on_a_tpu_host = {}
  libtpu_lock.allow_libtpu_without_chips(on_a_tpu_host)
  assert on_a_tpu_host == {}


def test_chips_are_found_by_their_device_files(monkeypatch):
  monkeypatch.setattr(libtpu_lock.glob, "glob",
                      lambda pattern: ["/dev/accel0"] if pattern == "/dev/accel*" else [])
  assert libtpu_lock.host_has_tpu_chips()
  monkeypatch.setattr(libtpu_lock.glob, "glob", lambda pattern: [])
  assert not libtpu_lock.host_has_tpu_chips()


def test_importing_mll_jax_sets_the_default_before_jax_starts():
  code = ("import os; os.environ.pop('ALLOW_MULTIPLE_LIBTPU_LOAD', None); import mll_jax; "
          "from mll_jax import libtpu_lock; "
          "print(os.environ.get('ALLOW_MULTIPLE_LIBTPU_LOAD'), libtpu_lock.host_has_tpu_chips())")
  out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                       text=True, timeout=120, check=True).stdout.split()
  assert out == (["None", "True"] if out[1] == "True" else ["1", "False"])
