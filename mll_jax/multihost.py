"""Joining JAX's distributed runtime before the first JAX computation, and host-side helpers
that multi-process runs need.

Three ways to start, first match wins:

1. explicit: `--coordinator_address=HOST:PORT --num_processes=N --process_id=I`
   (or the environment variables JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID);
2. a scheduler JAX detects itself: `--cluster=auto` (Cloud TPU, SLURM, Open MPI, GKE, ...), or
   `--cluster=slurm|tpu|gcetpu|gketpu|ompi|mpi4py|k8s` to name it;
3. neither: one process (no distributed runtime at all).

On CPU the processes exchange collectives over gloo (JAX's default CPU collectives), so two
processes on one machine, each with `--cpu_devices=K` fake devices, form one mesh of 2K devices.
"""

import os

import jax
import numpy as np
from absl import flags
from jax.experimental import multihost_utils

COORDINATOR_FLAG = flags.DEFINE_string(
    "coordinator_address", None,
    "HOST:PORT of process 0's coordinator (multi-process runs). Env: JAX_COORDINATOR_ADDRESS.")
NUM_PROCESSES_FLAG = flags.DEFINE_integer(
    "num_processes", None, "Processes in the run (with --coordinator_address). "
    "Env: JAX_NUM_PROCESSES.")
PROCESS_ID_FLAG = flags.DEFINE_integer(
    "process_id", None, "This process's index, 0..num_processes-1. Env: JAX_PROCESS_ID.")
CLUSTER_FLAG = flags.DEFINE_string(
    "cluster", None, "Let JAX detect the cluster: 'auto', or one of slurm, tpu, gcetpu, "
    "gketpu, ompi, mpi4py, k8s.")
CPU_DEVICES_FLAG = flags.DEFINE_integer(
    "cpu_devices", None, "Fake CPU devices in this process (CPU only: to test sharding and "
    "to compile for a pod's mesh without one).")

CLUSTERS = ("slurm", "tpu", "gcetpu", "gketpu", "ompi", "mpi4py", "k8s")


class LaunchError(ValueError):
  """A multi-process launch that cannot work as given; the message says how to fix it."""


def _env_int(name: str) -> int | None:
  value = os.environ.get(name)
  if value in (None, ""):
    return None
  try:
    return int(value)
  except ValueError:
    raise LaunchError(f"The environment variable {name}={value!r} is not an integer.") from None


def launch_settings(coordinator_address=None, num_processes=None, process_id=None,
                    cluster=None) -> dict | None:
  """The `jax.distributed.initialize` arguments from flags-or-environment values, or None for
  a single process. Checked here so a bad launch fails with a message, not a 300 s timeout."""
  coordinator_address = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS")
  num_processes = num_processes if num_processes is not None else _env_int("JAX_NUM_PROCESSES")
  process_id = process_id if process_id is not None else _env_int("JAX_PROCESS_ID")
  if cluster:
    if cluster != "auto" and cluster not in CLUSTERS:
      raise LaunchError(f"--cluster={cluster!r} is not known; use 'auto' or one of "
                        f"{', '.join(CLUSTERS)}.")
    settings = {"cluster_detection_method": None if cluster == "auto" else cluster}
    # Explicit values still override what the scheduler reports.
    settings.update({k: v for k, v in (("coordinator_address", coordinator_address),
                                       ("num_processes", num_processes),
                                       ("process_id", process_id)) if v is not None})
    return settings
  if coordinator_address is None:
    if num_processes not in (None, 1) or process_id not in (None, 0):
      raise LaunchError("--num_processes/--process_id were given without "
                        "--coordinator_address=HOST:PORT (process 0's address), or use "
                        "--cluster=auto under a scheduler.")
    return None
  if ":" not in coordinator_address:
    raise LaunchError(f"--coordinator_address={coordinator_address!r} needs a port: HOST:PORT, "
                      "e.g. localhost:12355.")
  if num_processes is None or process_id is None:
    raise LaunchError("--coordinator_address needs --num_processes=N and --process_id=I too "
                      "(or JAX_NUM_PROCESSES / JAX_PROCESS_ID).")
  if num_processes < 1 or not 0 <= process_id < num_processes:
    raise LaunchError(f"--process_id={process_id} must be in 0..{num_processes - 1} "
                      f"(--num_processes={num_processes}).")
  return {"coordinator_address": coordinator_address, "num_processes": num_processes,
          "process_id": process_id}


def initialize_from_flags() -> None:
  """Sets fake CPU devices and joins the distributed runtime as the flags/environment say.

  Call once per process, before anything touches a JAX device.
  """
  if CPU_DEVICES_FLAG.value is not None:
    if CPU_DEVICES_FLAG.value < 1:
      raise LaunchError(f"--cpu_devices={CPU_DEVICES_FLAG.value} must be at least 1.")
    jax.config.update("jax_num_cpu_devices", CPU_DEVICES_FLAG.value)
  settings = launch_settings(COORDINATOR_FLAG.value, NUM_PROCESSES_FLAG.value,
                             PROCESS_ID_FLAG.value, CLUSTER_FLAG.value)
  if settings is not None and not jax.distributed.is_initialized():
    jax.distributed.initialize(**settings)


def is_main_process() -> bool:
  """Process 0: the one that prints and writes files every process would write alike."""
  return jax.process_index() == 0


def to_host(tree):
  """Arrays -> numpy on every process, gathering the shards other processes hold."""
  def fetch(x):
    if not isinstance(x, jax.Array) or x.is_fully_addressable:
      return np.asarray(x)
    if x.is_fully_replicated:  # every process holds it all already
      return np.asarray(x.addressable_data(0))
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return jax.tree.map(fetch, tree)


def agree_to_stop(step: int, local_request: bool) -> bool:
  """Whether every process stops after `step`.

  One process: its own SIGTERM flag. Several: JAX's preemption sync point, which turns a notice
  reaching any process into one step at which all of them save (a per-process flag would make
  them stop at different steps and hang in the next collective).
  """
  if jax.process_count() == 1:
    return local_request
  try:
    return multihost_utils.reached_preemption_sync_point(step)
  except RuntimeError:  # jax_enable_preemption_service switched off: no agreed stop exists
    return False
