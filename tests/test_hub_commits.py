"""The hub's commit protocol (hub_layout): what an outside reliability test found in the
rename-and-lock protocol, each case closed, and the hub on buckets: racing registrars on s3://
and gs:// get distinct versions, exports and imports go between buckets and disk, and
experiments/build_hub.py --quick builds a hub on s3://."""

import json
import shutil
import subprocess
import sys
import threading
import uuid

import numpy as np
import pytest

from conftest import REPO_ROOT, TEST_CACHE
from mll_jax.hub import registry, sharing
from mll_jax.storage import objects
from test_registry import ARCH, CLASSES, REGISTER_SCRIPT, hub, variables  # noqa: F401

ROOTS = {"s3": "s3://bucket-two", "gs": "gs://bucket-one"}


def _label(n=4):
  return {"responses": np.zeros((n, 3), np.float32), "pools_fingerprint": np.asarray("abc")}


# --- trust rests on commits, not on what lies in the folders -------------------------------------

def test_a_copied_blob_is_not_adopted_and_is_collected_when_stale(hub, variables):
  hub.register("pets", ARCH, variables, CLASSES)
  source = hub.entry_folder("pets@1")
  shutil.copytree(source, source.parent / uuid.uuid4().hex)  # another entry's files, unnamed
  assert [e.ref for e in hub.entries()] == ["pets@1"] and hub.verify() == {"pets@1": []}
  assert hub.collect_garbage() == []  # fresh: it may be a registration under way
  assert len(hub.collect_garbage(stale_after_s=-1)) == 1
  assert hub.layout.blob_ids() == [hub.show("pets@1").blob]


def test_a_manifest_copied_under_another_name_is_refused(hub, variables):
  hub.register("pets", ARCH, variables, CLASSES)
  evil = hub.directory / "manifests" / "evil"
  evil.mkdir()
  shutil.copy(hub.manifest_path("pets@1"), evil / "00000001.json")
  problems = hub.verify()["evil@1"]
  assert "its manifest claims to be pets@1" in problems
  assert "its files are those of pets@1 too" in problems
  with pytest.raises(registry.CorruptEntry, match="evil@1 is corrupted"):
    hub.load("evil")


def test_a_label_dropped_in_is_not_adopted(hub, variables):
  hub.register("pets", ARCH, variables, CLASSES)
  blob = hub.directory / "blobs" / uuid.uuid4().hex
  blob.mkdir()
  (blob / "label.npz").write_bytes(registry._label_bytes(_label()))
  (hub.directory / "labels").mkdir(exist_ok=True)
  (hub.directory / "labels" / "pets@1.npz").write_bytes(b"stray")  # the old layout's place
  assert hub.load_label("pets") is None and hub.verify() == {"pets@1": []}


def test_versions_are_never_reused_even_without_the_index(hub, variables):
  hub.register("pets", ARCH, variables, CLASSES)
  hub.remove("pets@1")
  (hub.directory / "index.json").unlink()
  assert hub.register("pets", ARCH, variables, CLASSES).ref == "pets@2"


def test_a_kill_right_after_the_commit_leaves_one_whole_entry(hub, variables, tmp_path,
                                                              monkeypatch):
  source = registry.Hub(tmp_path / "source")
  source.register("pets", ARCH, variables, CLASSES)
  archive = tmp_path / "pets.tar"
  sharing.export_entry(source, "pets", archive)

  def killed(*args, **kwargs):
    raise KeyboardInterrupt  # stands in for SIGKILL between the commit and anything after
  monkeypatch.setattr(hub, "index", killed)
  with pytest.raises(KeyboardInterrupt):
    sharing.import_entry(hub, archive)
  monkeypatch.undo()
  assert [e.ref for e in hub.entries()] == ["pets@1"] and hub.verify() == {"pets@1": []}
  assert sharing.import_entry(hub, archive) == ("pets@1", "already in this hub (nothing "
                                                "written)")
  assert [e.ref for e in hub.entries()] == ["pets@1"]


def test_two_imports_of_one_archive_keep_one_entry(hub, variables, tmp_path, monkeypatch):
  source = registry.Hub(tmp_path / "source")
  source.register("pets", ARCH, variables, CLASSES)
  archive = tmp_path / "pets.tar"
  sharing.export_entry(source, "pets", archive)
  real, calls = sharing._imports_of, iter(range(100))
  # Each import asks twice: before registering ("already imported?") and after. Both imports
  # are made to miss each other before registering, as two processes at the same moment do.
  monkeypatch.setattr(sharing, "_imports_of", lambda h, name, source: (
      [] if next(calls) % 2 == 0 else real(h, name, source)))
  first = sharing.import_entry(hub, archive)
  second = sharing.import_entry(hub, archive)
  assert first == ("pets@1", "imported unlabelled: this hub has no pools yet (build them with "
                   "`pools`, then `label` it)")
  assert second[0] == "pets@1" and "imported at the same time" in second[1]
  assert [e.ref for e in hub.entries()] == ["pets@1"] and hub.is_removed("pets@2")


def test_stray_names_and_a_broken_manifest_block_nothing(hub, variables):
  hub.register("pets", ARCH, variables, CLASSES)
  manifests = hub.directory / "manifests"
  (manifests / ".index.json.abc.tmp").write_text("{")
  (manifests / "nameless").mkdir()
  (manifests / "bad name@1").mkdir()
  (manifests / "bad name@1" / "00000001.json").write_text("{}")
  (manifests / "pets" / "7.json").write_text("{}")
  (hub.directory / "blobs" / "vm__abc__x").mkdir()
  (manifests / "broken").mkdir()
  (manifests / "broken" / "00000001.json").write_text("{")
  assert hub.register("pets", ARCH, variables, CLASSES).ref == "pets@2"
  report = hub.verify()
  assert report["pets@1"] == [] and report["pets@2"] == []
  assert report["broken@1"][0].startswith("its manifest is unreadable")
  assert [e.ref for e in hub.entries()] == ["pets@1", "pets@2"]
  hub.remove("pets@1")
  assert hub.collect_garbage(stale_after_s=-1) == []  # strays are not blobs: left alone


@pytest.mark.parametrize("link", ["entry", "blobs", "label"])
def test_links_that_leave_the_hub_are_refused(hub, variables, tmp_path, link):
  hub.register("pets", ARCH, variables, CLASSES, label=_label())
  outside = tmp_path / "outside"
  if link == "entry":
    target = hub.entry_folder("pets@1")
  elif link == "blobs":
    target = hub.directory / "blobs"
  else:
    target = hub.directory / "blobs" / hub.label_record("pets@1")["blob"]
  shutil.move(target, outside)
  target.symlink_to(outside, target_is_directory=True)
  problems = hub.verify()["pets@1"]
  assert any("symbolic link or leads outside the hub" in p or "label" in p for p in problems), \
      problems
  with pytest.raises(registry.CorruptEntry):
    hub.load("pets")
  if link != "entry":
    with pytest.raises(registry.CorruptEntry):
      hub.load_label("pets")


def test_a_stalled_registrar_blocks_no_one(hub, variables):
  # There is no lock: a registration under way (its blob written, not yet committed) and a
  # registrar that died holding nothing cannot make another wait.
  hub._new_blob()
  assert hub.register("pets", ARCH, variables, CLASSES).ref == "pets@1"


def test_a_load_racing_a_removal_says_it_was_removed(hub, variables, monkeypatch):
  hub.register("pets", ARCH, variables, CLASSES)
  real_restore = registry.restore_variables

  def removed_mid_read(folder, architecture):
    hub.remove("pets@1")
    return real_restore(folder, architecture)
  monkeypatch.setattr(registry, "restore_variables", removed_mid_read)
  with pytest.raises(registry.HubError, match="pets@1 was removed while it was being loaded"):
    hub.load("pets@1")


def test_loads_racing_removals_never_report_corruption(hub, variables):
  for _ in range(6):
    hub.register("pets", ARCH, variables, CLASSES)
  outcomes, stop = [], threading.Event()

  def load_until_stopped():
    while not stop.is_set():
      for version in range(1, 7):
        try:
          hub.load(f"pets@{version}")
          outcomes.append("loaded")
        except registry.CorruptEntry as e:
          outcomes.append(f"corrupt: {e}")
        except registry.HubError:
          outcomes.append("removed")
  reader = threading.Thread(target=load_until_stopped)
  reader.start()
  for version in range(1, 7):
    hub.remove(f"pets@{version}")
  stop.set()
  reader.join()
  assert not [o for o in outcomes if o.startswith("corrupt")], outcomes


# --- the hub in buckets ---------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize("scheme", ["s3", "gs"])
def test_racing_registrars_in_a_bucket_get_distinct_versions(scheme, buckets, subprocess_env):
  hub_dir = f"{ROOTS[scheme]}/{uuid.uuid4().hex}/hub"
  env = {**subprocess_env, **buckets}
  procs = [subprocess.Popen([sys.executable, "-c", REGISTER_SCRIPT, hub_dir, f"p{i}", "6"],
                            cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True) for i in range(3)]
  outputs = [p.communicate(timeout=600)[0] for p in procs]
  assert all(p.returncode == 0 for p in procs), "\n".join(o[-2000:] for o in outputs)
  hub = registry.Hub(hub_dir)
  refs = [e.ref for e in hub.entries()]
  assert len(refs) == len(set(refs)) == 18
  assert {f"shared@{v}" for v in range(1, 7)} <= set(refs)  # 3 x 2 racing registrations
  assert all(problems == [] for problems in hub.verify().values())


def test_export_and_import_between_buckets_and_disk(buckets, variables, tmp_path):
  source = registry.Hub(f"{ROOTS['s3']}/{uuid.uuid4().hex}/hub")
  source.register("pets", ARCH, variables, CLASSES, label=_label())
  in_bucket = f"{ROOTS['gs']}/{uuid.uuid4().hex}/pets.tar"
  sharing.export_entry(source, "pets", in_bucket)
  target = registry.Hub(f"{ROOTS['gs']}/{uuid.uuid4().hex}/hub")
  assert sharing.import_entry(target, in_bucket)[0] == "pets@1"
  on_disk = registry.Hub(tmp_path / "hub")
  sharing.export_entry(target, "pets", tmp_path / "pets.tar")
  assert sharing.import_entry(on_disk, tmp_path / "pets.tar")[0] == "pets@1"
  images = np.random.default_rng(0).integers(0, 256, (4, 28, 28, 1), dtype=np.uint8)
  outputs = [np.asarray(apply(loaded, images)) for apply, loaded in
             (h.load("pets") for h in (source, target, on_disk))]
  np.testing.assert_array_equal(outputs[0], outputs[1])
  np.testing.assert_array_equal(outputs[0], outputs[2])
  assert target.verify() == {"pets@1": []} and on_disk.verify() == {"pets@1": []}
  assert objects.read(f"{ROOTS['s3']}/none/pets.tar") is None


@pytest.mark.slow
@pytest.mark.study
def test_quick_hub_build_in_s3(buckets, subprocess_env, tmp_path):
  hub_dir = f"{ROOTS['s3']}/{uuid.uuid4().hex}/hub"
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.build_hub", "--quick", f"--hub_dir={hub_dir}",
       f"--runs_dir={tmp_path / 'runs'}", f"--out={tmp_path / 'out'}",
       f"--compilation_cache={TEST_CACHE}"], cwd=REPO_ROOT, env={**subprocess_env, **buckets},
      capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  hub = registry.Hub(hub_dir)
  assert [e.ref for e in hub.entries()] == ["farm@1", "pets_plus@1", "savanna_plus@1"]
  assert all(problems == [] for problems in hub.verify().values())
  assert all(hub.load_label(e.ref) is not None for e in hub.entries())
  assert json.loads(objects.read(f"{hub_dir}/HUB.json"))["format"] == registry.FORMAT
