"""Compiling for a real TPU pod slice from this CPU host (`--compile_only --topology=NAME`):
the `mu` MAE for a small v5e slice with XLA's TPU compiler, pod names, and bad input.

libtpu comes with the test extras (`jax[tpu]`), so CI runs these; elsewhere the compile test
skips with the reason."""

import subprocess
import sys

import pytest

from mll_jax import train, tpu_pods
from conftest import REPO_ROOT, load_config


def _has_libtpu() -> bool:
  try:
    import libtpu  # noqa: F401
    return True
  except ImportError:
    return False


@pytest.mark.slow
@pytest.mark.skipif(not _has_libtpu(), reason="no libtpu: pip install \"jax[tpu]\" (the test "
                    "extras include it) to compile for TPU from this host")
def test_compile_mu_mae_for_a_v5e_slice(data_dir):
  config = load_config("mae", "mu", data_dir, {"batch_size": 32})
  report = train.compile_only(config, topology="v5e-4")
  assert (report.platform, report.devices, report.mesh) == ("v5e-4", 4, {"data": 4, "fsdp": 1})
  assert report.chip is tpu_pods.CHIPS["v5e"]
  assert report.dtype == "bfloat16"          # "auto" resolved for the TPU, not for this CPU
  assert config.model.dtype == "auto"        # the caller's config is left as it was
  assert report.flops_per_device > 0 and report.bytes_accessed_per_device > 0
  assert 0 < report.peak_bytes_per_device < report.chip.hbm_bytes
  bound = report.roofline()
  assert bound.step_seconds == max(bound.compute_seconds, bound.memory_seconds) > 0
  text = report.text()
  assert "HBM per chip" in text and "of 16.00 GiB" in text and "fits" in text


def test_pod_names_map_to_their_physical_slices():
  assert tpu_pods.pod_slice("v5p-128").topology == "v5:4x4x4"   # 128 cores = 64 chips
  assert tpu_pods.pod_slice("v5p-128").chips == 64
  assert tpu_pods.pod_slice("v5e-256").topology == "v5e:16x16"
  assert tpu_pods.pod_slice("v4-32").topology == "v4:2x2x4"
  assert "v5p-128" in tpu_pods.valid_names() and "v5e-256" in tpu_pods.valid_names()


@pytest.mark.parametrize("name", ["v9-8", "v5p-100", "v5e", "v5p-129"])
def test_unknown_topology_lists_the_valid_names(name):
  with pytest.raises(tpu_pods.TopologyError, match=r"Unknown TPU topology .* valid names: "
                                                   r"v4-8, v4-16"):
    tpu_pods.pod_slice(name)


@pytest.mark.slow
@pytest.mark.integration
def test_the_cli_gives_one_message_for_a_bad_topology(subprocess_env):
  for extra, expected in ((["--compile_only", "--topology=v5p-7"], "Unknown TPU topology"),
                          (["--topology=v5p-128"], "needs --compile_only")):
    done = subprocess.run([sys.executable, "-m", "mll_jax.train", "--config=configs/mae.py:mu",
                           *extra], cwd=REPO_ROOT, env=subprocess_env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0]
    assert "Traceback" not in done.stderr
