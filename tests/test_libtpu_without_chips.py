"""On a host without TPU chips, libtpu's one-process lock is lifted and its questions about the
host's place in a slice answered, by default; on a TPU host nothing is changed."""

import importlib.util
import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT
from mll_jax import libtpu_without_chips


def test_defaults_are_set_only_without_chips(monkeypatch):
  monkeypatch.setattr(libtpu_without_chips, "host_has_tpu_chips", lambda: False)
  environ = {}
  libtpu_without_chips.configure(environ)
  assert environ == {"ALLOW_MULTIPLE_LIBTPU_LOAD": "1", "TPU_WORKER_HOSTNAMES": "localhost",
                     "TPU_HOST_BOUNDS": "1,1,1"}
  chosen = {"ALLOW_MULTIPLE_LIBTPU_LOAD": "0", "TPU_WORKER_HOSTNAMES": "10.0.0.2"}
  libtpu_without_chips.configure(chosen)  # a user's own choices stay
  assert chosen == {"ALLOW_MULTIPLE_LIBTPU_LOAD": "0", "TPU_WORKER_HOSTNAMES": "10.0.0.2",
                    "TPU_HOST_BOUNDS": "1,1,1"}
  monkeypatch.setattr(libtpu_without_chips, "host_has_tpu_chips", lambda: True)
  on_a_tpu_host = {}
  libtpu_without_chips.configure(on_a_tpu_host)
  assert on_a_tpu_host == {}


def test_chips_are_found_by_their_device_files(monkeypatch):
  monkeypatch.setattr(libtpu_without_chips.glob, "glob",
                      lambda pattern: ["/dev/accel0"] if pattern == "/dev/accel*" else [])
  assert libtpu_without_chips.host_has_tpu_chips()
  monkeypatch.setattr(libtpu_without_chips.glob, "glob", lambda pattern: [])
  assert not libtpu_without_chips.host_has_tpu_chips()


def _python(code: str, also_unset: tuple = ()) -> subprocess.CompletedProcess:
  """`code` in a fresh interpreter without the defaults (nor `also_unset`) in its environment."""
  unset = {*libtpu_without_chips.DEFAULTS_WITHOUT_CHIPS, *also_unset}
  environ = {k: v for k, v in os.environ.items() if k not in unset}
  return subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                        text=True, timeout=120, check=True, env=environ)


CHANGED_ENVIRONMENT = ("import os, json; before = dict(os.environ); {imports}; "
                       "print(json.dumps({{k: v for k, v in os.environ.items() "
                       "if before.get(k) != v}} | {{k: None for k in before "
                       "if k not in os.environ}}))")


def test_importing_mll_jax_changes_no_environment_variable():
  assert _python(CHANGED_ENVIRONMENT.format(imports="import mll_jax")).stdout.strip() == "{}"
  # Its modules neither, beyond what their libraries set when imported (jax with libtpu
  # installed sets TPU_LIBRARY_PATH, sklearn KMP_DUPLICATE_LIB_OK, ...): those go first.
  libraries = ("import jax, flax, optax, orbax.checkpoint, tensorflow_datasets, grain, sklearn, "
               "tensorboardX")
  modules = "import mll_jax.train, mll_jax.sweep, mll_jax.hub.registry, mll_jax.hub.reuse"
  out = _python(CHANGED_ENVIRONMENT.format(imports=f"{libraries}; before = dict(os.environ); "
                                                   f"{modules}")).stdout.strip()
  assert out == "{}"


def test_a_command_sets_the_defaults_before_jax_starts():
  out = _python("import os; from mll_jax import command, libtpu_without_chips as l; "
                "command.start(); print(os.environ.get('ALLOW_MULTIPLE_LIBTPU_LOAD'), "
                "l.host_has_tpu_chips())").stdout.split()
  assert out == (["None", "True"] if out[1] == "True" else ["1", "False"])


@pytest.mark.skipif(importlib.util.find_spec("libtpu") is None,
                    reason="libtpu is not installed (pip install \"jax[tpu]\"): JAX never "
                           "loads it, so it prints nothing to silence")
@pytest.mark.skipif(libtpu_without_chips.host_has_tpu_chips(),
                    reason="a TPU host: libtpu finds its slice itself")
def test_a_jax_start_without_chips_prints_no_libtpu_warnings():
  # conftest.py's JAX_PLATFORMS=cpu keeps JAX off libtpu: unset, JAX tries every backend.
  stderr = _python("from mll_jax import command; command.start(); import jax; "
                   "print(jax.devices())", ("JAX_PLATFORMS",)).stderr
  for warning in ("TPU_WORKER_HOSTNAMES", "Failed to find host bounds", "Source Location Trace"):
    assert warning not in stderr
