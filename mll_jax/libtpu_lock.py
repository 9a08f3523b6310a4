"""libtpu's one-process lock, lifted on hosts without TPU chips.

Where libtpu is installed (`jax[tpu]`, which compiling for a TPU pod from here needs), every JAX
process that tries the TPU backend takes `/tmp/libtpu_lockfile`, even on a host with no TPU, and
a second process that loads libtpu then fails with "Internal error when accessing libtpu
multi-process lockfile": a `--topology` compile beside a running study, or the TPU-compile test
beside one (seen in this project's suite). The lock keeps two processes off the same chips; on a
host without chips there is nothing to keep, so there `ALLOW_MULTIPLE_LIBTPU_LOAD=1` (libtpu's
own switch) is the default. On a TPU host the lock is left as libtpu sets it.
"""

import glob
import os

# TPU VMs expose their chips as /dev/accel* (v2-v5e) or as VFIO groups (v5p, v6e).
_CHIP_PATTERNS = ("/dev/accel*", "/dev/vfio/[0-9]*")


def host_has_tpu_chips() -> bool:
  """Whether this host has TPU chips attached."""
  return any(glob.glob(pattern) for pattern in _CHIP_PATTERNS)


def allow_libtpu_without_chips(environ=os.environ) -> None:
  """Sets `ALLOW_MULTIPLE_LIBTPU_LOAD=1` in `environ` unless set, where the host has no TPU
  chips. Must run before libtpu loads (JAX's first backend use, or a topology compile)."""
  if not host_has_tpu_chips():
    environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
