"""libtpu's settings on hosts without TPU chips: no one-process lock, no metadata questions.

Where libtpu is installed (`jax[tpu]`, which compiling for a TPU pod from here needs), every JAX
process tries the TPU backend at its first use, even on a host with no TPU, and libtpu then:

- takes `/tmp/libtpu_lockfile`, so a second process that loads libtpu fails with "Internal error
  when accessing libtpu multi-process lockfile": a `--topology` compile beside a running study,
  or the TPU-compile test beside one (seen in this project's suite). The lock keeps two
  processes off the same chips; without chips there is nothing to keep, so
  `ALLOW_MULTIPLE_LIBTPU_LOAD=1` (libtpu's own switch);
- asks who this host is in its slice, finds no answer (JAX sets `TPU_SKIP_MDS_QUERY` when there
  are no chips) and prints five lines on every command ("Failed to find host bounds",
  "INVALID_ARGUMENT: ... unexpected worker hostname ... TPU_WORKER_HOSTNAMES", a source trace)
  before JAX falls back to the CPU. The answer a one-host slice would give
  (`TPU_WORKER_HOSTNAMES=localhost`, `TPU_HOST_BOUNDS=1,1,1`) silences them; compile-only
  topologies are named in full by `mll_jax.tpu_pods` and come out the same with or without it
  (v5p-128: 64 devices on 16 hosts, v5e-256: 256 on 64, checked 2026-12-02).

Each is a default: a variable the user set stays. On a TPU host nothing is changed.
"""

import glob
import os

# TPU VMs expose their chips as /dev/accel* (v2-v5e) or as VFIO groups (v5p, v6e).
_CHIP_PATTERNS = ("/dev/accel*", "/dev/vfio/[0-9]*")
DEFAULTS_WITHOUT_CHIPS = {"ALLOW_MULTIPLE_LIBTPU_LOAD": "1",
                          "TPU_WORKER_HOSTNAMES": "localhost",
                          "TPU_HOST_BOUNDS": "1,1,1"}


def host_has_tpu_chips() -> bool:
  """Whether this host has TPU chips attached."""
  return any(glob.glob(pattern) for pattern in _CHIP_PATTERNS)


def configure(environ=os.environ) -> None:
  """Sets `DEFAULTS_WITHOUT_CHIPS` in `environ`, each unless set, where the host has no TPU
  chips. Must run before libtpu loads (JAX's first backend use, or a topology compile)."""
  if not host_has_tpu_chips():
    for name, value in DEFAULTS_WITHOUT_CHIPS.items():
      environ.setdefault(name, value)
