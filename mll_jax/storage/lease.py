"""One run per workdir on object storage, where there is no flock: a renewed lease.

The rule. Each process index of a run holds a lease in `workdir/.leases/process-<i>/`, whose
objects are numbered epochs (`000000000000.json`, ...). An epoch object names its holder (host,
pid, run id) and when it was last renewed; its holder rewrites it every `ttl/3` seconds while
the run lives and marks it released when the run ends. A newcomer reads the newest epoch:

- released, or not renewed for longer than its `ttl` (its holder was killed): the newcomer
  takes the workdir by creating the next epoch, create-if-absent, so of two newcomers racing
  exactly one wins;
- otherwise the workdir is busy, and the newcomer stops, naming the holder.

A holder that finds a newer epoch than its own (it stalled for longer than the ttl and was
taken over) has lost the workdir: `check` raises before its next checkpoint, so the two runs
never both keep writing. Staleness compares the holder's clock with the newcomer's, so hosts'
clocks must agree to well within the ttl (NTP keeps cloud hosts within milliseconds).
"""

import json
import os
import socket
import threading
import time
import uuid

from mll_jax.storage import objects

DEFAULT_TTL_S = 60.0


class LeaseBusy(RuntimeError):
  """A live run holds the workdir's lease; the message names it."""


class LeaseLost(RuntimeError):
  """Another run took over this run's workdir; this one must stop writing."""


class Lease:
  """A held lease, renewed in a background thread until `release`."""

  def __init__(self, workdir, process_index: int = 0, ttl_s: float = DEFAULT_TTL_S):
    self.folder = f"{os.fspath(workdir).rstrip('/')}/.leases/process-{process_index}"
    self.ttl_s = ttl_s
    self.record = {"holder": f"{socket.gethostname()} pid {os.getpid()}",
                   "run": uuid.uuid4().hex, "ttl_s": ttl_s, "released": False}
    self.epoch = self._acquire()
    self.lost: str | None = None
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._renew_until_released, daemon=True,
                                    name="workdir-lease")
    self._thread.start()

  def _path(self, epoch: int) -> str:
    return f"{self.folder}/{epoch:012d}.json"

  def _epochs(self) -> list[int]:
    return sorted(int(n[:-5]) for n in objects.names(self.folder)
                  if n.endswith(".json") and n[:-5].isdigit())

  def _acquire(self) -> int:
    epochs = self._epochs()
    if epochs:
      newest = json.loads(objects.read(self._path(epochs[-1])) or b"{}")
      age = time.time() - newest.get("renewed_at", 0.0)
      if not newest.get("released") and age <= newest.get("ttl_s", self.ttl_s):
        raise LeaseBusy(
            f"{self.folder.rsplit('/.leases', 1)[0]} is in use by another run "
            f"({newest.get('holder', 'unknown')}, lease renewed {age:.0f} s ago). Wait for it "
            "to finish, stop it, or give this run another --workdir. A killed run's lease "
            f"lapses {newest.get('ttl_s', self.ttl_s):.0f} s after its last renewal.")
    epoch = epochs[-1] + 1 if epochs else 0
    if not objects.create_if_absent(self._path(epoch), self._encoded()):
      raise LeaseBusy(f"Another run took {self.folder.rsplit('/.leases', 1)[0]} at the same "
                      "moment; give this run another --workdir or stop the other.")
    return epoch

  def _encoded(self) -> bytes:
    return json.dumps({**self.record, "renewed_at": time.time()}).encode()

  def _renew_until_released(self) -> None:
    while not self._stop.wait(self.ttl_s / 3) and self.renew():
      pass

  def renew(self) -> bool:
    """Rewrites the lease with the time now; False once another run has taken it over."""
    try:
      newer = [e for e in self._epochs() if e > self.epoch]
      if newer:
        taker = json.loads(objects.read(self._path(newer[-1])) or b"{}")
        self.lost = (f"another run ({taker.get('holder', 'unknown')}) took over the workdir "
                     f"after this run's lease was not renewed for {self.ttl_s:.0f} s")
        return False
      objects.write(self._path(self.epoch), self._encoded())
    except objects.StorageError as e:  # a missed renewal is retried; the ttl allows two
      print(f"WARNING: could not renew the workdir lease ({e}); retrying.", flush=True)
    return True

  def check(self) -> None:
    """Raises LeaseLost if another run has taken the workdir over."""
    if self.lost:
      raise LeaseLost(f"This run stops: {self.lost}. Its last checkpoint is kept; the other "
                      "run continues in the workdir.")

  def release(self) -> None:
    """Stops renewing and marks the lease released, so the next run may start at once."""
    self._stop.set()
    self._thread.join()
    if not self.lost:
      self.record["released"] = True
      objects.write(self._path(self.epoch), self._encoded())
