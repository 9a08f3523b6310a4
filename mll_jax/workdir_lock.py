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
"""

import contextlib
import fcntl
import os
import pathlib


class WorkdirBusy(RuntimeError):
  """Another process holds the workdir; the message names it and what to do."""


@contextlib.contextmanager
def hold(workdir: pathlib.Path, process_index: int = 0):
  """Holds the workdir's lock for the `with` block; raises WorkdirBusy if another holds it."""
  path = workdir / f".lock-{process_index}"
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
    yield
  finally:
    handle.close()  # closing the file releases the lock
