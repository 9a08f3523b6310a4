"""Object storage primitives on local disk, S3 (moto) and GCS (the emulator with preconditions):
create-if-absent has exactly one winner, and the workdir lease follows its stated rule."""

import io
import threading
import time
import uuid

import pytest

from mll_jax.storage import lease, locations, objects

ROOTS = {"s3": "s3://bucket-two", "gs": "gs://bucket-one"}


@pytest.fixture(params=["local", "s3", "gs"])
def root(request, tmp_path):
  """A fresh folder on each kind of storage."""
  if request.param == "local":
    return str(tmp_path)
  request.getfixturevalue("buckets")
  return f"{ROOTS[request.param]}/{uuid.uuid4().hex}"


def _race(count: int, attempt) -> list:
  """Runs `attempt(i)` in `count` threads released at once; their results in order."""
  start, results = threading.Barrier(count), [None] * count

  def run(i):
    start.wait()
    try:
      results[i] = attempt(i)
    except Exception as e:  # noqa: BLE001 - the caller inspects what each got
      results[i] = e
  threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  return results


def test_create_if_absent_has_exactly_one_winner(root):
  path = f"{root}/manifest.json"
  won = _race(8, lambda i: objects.create_if_absent(path, f"writer {i}".encode()))
  assert sorted(won, key=str) == [False] * 7 + [True]
  assert objects.read(path) == f"writer {won.index(True)}".encode()
  assert objects.names(root) == ["manifest.json"]  # no temporary left behind


def test_read_and_names_of_what_is_absent(root):
  assert objects.read(f"{root}/none.json") is None
  assert objects.names(f"{root}/none") == []


def test_racing_runs_get_one_lease_and_the_next_run_follows_a_release(root):
  held = _race(6, lambda i: lease.Lease(root, 0, ttl_s=30))
  winners = [h for h in held if isinstance(h, lease.Lease)]
  assert len(winners) == 1, held
  assert all(isinstance(h, lease.LeaseBusy) for h in held if h is not winners[0])
  with pytest.raises(lease.LeaseBusy, match="in use by another run .*pid"):
    lease.Lease(root, 0, ttl_s=30)
  other_process = lease.Lease(root, 1, ttl_s=30)  # each process index has its own lease
  winners[0].release()
  other_process.release()
  follower = lease.Lease(root, 0, ttl_s=30)
  assert follower.epoch == winners[0].epoch + 1
  follower.release()


def test_a_stale_lease_is_taken_over_and_its_stalled_holder_stops(root):
  stalled = lease.Lease(root, 0, ttl_s=0.5)
  stalled._stop.set()  # a holder that stops renewing (killed, or paused past its ttl)
  stalled._thread.join()
  with pytest.raises(lease.LeaseBusy):
    lease.Lease(root, 0, ttl_s=0.5)
  time.sleep(0.6)  # the rule under test: a lease not renewed for its ttl has lapsed
  taker = lease.Lease(root, 0, ttl_s=30)
  assert taker.epoch == stalled.epoch + 1
  assert not stalled.renew()
  with pytest.raises(lease.LeaseLost, match="took over the workdir"):
    stalled.check()
  taker.release()


@pytest.mark.parametrize("path, message", [
    ("gs://ab/run", "at least 3 characters"),
    ("ftp://host/run", "only local paths, gs:// and s3://"),
])
def test_bad_locations_are_named(path, message):
  with pytest.raises(ValueError, match=message):
    locations.location(path)


class _FlakyS3:
  """An S3 client whose first `failures` puts fail as a dropped connection would; `lands`
  says whether a failed put still reached the store (its answer lost on the way back)."""

  def __init__(self, failures: int, lands: bool):
    self.failures, self.lands, self.stored = failures, lands, {}

  def put_object(self, Bucket, Key, Body, IfNoneMatch=None):
    if IfNoneMatch and Key in self.stored:
      error = RuntimeError("precondition")
      error.response = {"Error": {"Code": "PreconditionFailed"}}
      raise error
    if self.failures:
      self.failures -= 1
      if self.lands:
        self.stored[Key] = Body
      raise type("EndpointConnectionError", (Exception,), {})("connection dropped")
    self.stored[Key] = Body

  def get_object(self, Bucket, Key):
    return {"Body": io.BytesIO(self.stored[Key])}


@pytest.mark.parametrize("lands", [False, True], ids=["lost", "landed"])
def test_transient_errors_are_retried_and_logged(monkeypatch, capsys, lands):
  flaky = _FlakyS3(failures=2, lands=lands)
  monkeypatch.setattr(objects, "_s3", lambda: flaky)
  monkeypatch.setattr(objects.time, "sleep", lambda seconds: None)
  assert objects.create_if_absent("s3://bucket-two/x/lease.json", b"mine")
  retries = [l for l in capsys.readouterr().out.splitlines() if "retry" in l]
  # Landed: the retry finds its own object, and knows it won from the bytes.
  assert len(retries) == (1 if lands else 2), retries
  for n, line in enumerate(retries, 1):
    assert line.startswith("WARNING: storage: could not create s3://bucket-two/x/lease.json "
                           "(EndpointConnectionError: connection dropped. The storage service "
                           "cannot be reached")
    assert line.endswith(f"retry {n} of 4 in {0.5 * 2 ** (n - 1):.1f} s")
  assert not objects.create_if_absent("s3://bucket-two/x/lease.json", b"theirs")


def test_a_lasting_outage_gives_up_with_one_message(monkeypatch):
  monkeypatch.setattr(objects, "_s3", lambda: _FlakyS3(failures=99, lands=False))
  monkeypatch.setattr(objects.time, "sleep", lambda seconds: None)
  with pytest.raises(objects.StorageError, match="Could not write s3://bucket-two/y: .*cannot be "
                     "reached"):
    objects.write("s3://bucket-two/y", b"data")
