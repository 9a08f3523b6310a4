"""One run per workdir: an exclusive lock that the OS releases when the process ends.

`fcntl.flock` on `workdir/.lock-<process index>`: a second trainer on the same workdir (the same
command in another terminal, a default workdir that hashes to the same folder) fails at once,
naming the pid that holds it, instead of writing the same checkpoints and doubling
`metrics.jsonl`. The kernel drops a flock when its holder exits, however it exits (SIGKILL
included), so no stale lock is ever left. In a multi-process run every process locks its own
index, so the processes of one run share the workdir and those of a second run collide with
them. Sweeps and studies run trainers one after another in one process: each takes the lock
for its run and releases it at the end.

flock is advisory and local to a host's kernel; on network file systems it is only as good as
the file system's lock support (NFSv4 and Lustre support it; some FUSE mounts do not).

A workdir in a bucket (gs://, s3://) has no flock: there the run holds a renewed lease instead
(`storage/lease.py` states its rule for a killed holder's stale lease).
"""

import contextlib
import fcntl
import os

from mll_jax.storage import lease, locations


class WorkdirBusy(RuntimeError):
  """Another process holds the workdir; the message names it and what to do."""


class _Flock:
  """A local lock cannot be taken over while its holder lives: nothing to check."""

  def check(self) -> None:
    pass


@contextlib.contextmanager
def hold(workdir, process_index: int = 0, lease_ttl_s: float = lease.DEFAULT_TTL_S):
  """Holds the workdir for the `with` block, yielding a handle whose `check()` raises
  `lease.LeaseLost` if another run took a bucket workdir over; raises WorkdirBusy if another
  run holds it."""
  if locations.is_remote(workdir):
    try:
      held = lease.Lease(workdir, process_index, lease_ttl_s)
    except lease.LeaseBusy as e:
      raise WorkdirBusy(str(e)) from None
    try:
      yield held
    finally:
      held.release()
    return
  path = os.path.join(workdir, f".lock-{process_index}")
  handle = open(path, "a+")
  try:
    try:
      fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      handle.seek(0)
      holder = handle.read().strip() or "unknown"
      raise WorkdirBusy(
          f"{workdir} is in use by another run (pid {holder}). Wait for it to finish, stop it, "
          "or give this run another --workdir.") from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    yield _Flock()
  finally:
    handle.close()  # closing the file releases the lock
