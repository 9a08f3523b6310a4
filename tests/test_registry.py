"""The hub registry: round trip, versions, concurrent registration, crashes, tampering, names.
(The commit protocol's attacks and races, and the hub in buckets: test_hub_commits.py.)"""

import json
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from conftest import REPO_ROOT
from mll_jax.hub import functional, registry

ARCH = {"task": "supervised", "model": {"variant": "mu", "patch_size": 4, "pool": "gap"},
        "image_size": 28, "channels": 1, "num_classes": 3}
CLASSES = ("cat", "dog", "cow")

# Registers `count` models named `<prefix>-<i>` (every 5th also as "shared", to race versions).
REGISTER_SCRIPT = """
import sys
from mll_jax.hub import functional, registry
hub_dir, prefix, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
arch = {arch!r}
variables = functional.init_variables(arch, seed=len(prefix))
hub = registry.Hub(hub_dir)
for i in range(count):
  hub.register("shared" if i % 5 == 0 else f"{{prefix}}-{{i}}", arch, variables,
               ["cat", "dog", "cow"], source=prefix)
  print("registered", i, flush=True)
""".format(arch=ARCH)


@pytest.fixture(scope="module")
def variables():
  return functional.init_variables(ARCH, seed=3)


@pytest.fixture
def hub(tmp_path):
  return registry.Hub(tmp_path / "hub")


def _images(n=6, seed=0):
  return np.random.RandomState(seed).randint(0, 256, (n, 28, 28, 1)).astype(np.uint8)


def test_register_load_round_trip_gives_identical_outputs(hub, variables):
  entry = hub.register("animals", ARCH, variables, CLASSES, ["n1", "n2", ""], source="test")
  assert entry.ref == "animals@1" and entry.parameters == functional.parameter_count(variables)
  assert entry.flops_per_image > 1e5  # from XLA's cost analysis of the compiled function
  apply, loaded = hub.load("animals")
  original = jax.jit(functional.apply_fn(ARCH))(variables, _images())
  np.testing.assert_array_equal(jax.jit(apply)(loaded, _images()), original)
  shown = hub.show("animals@1")
  assert shown.classes == CLASSES and shown.nodes == ("n1", "n2", "") and shown.source == "test"
  assert hub.index()["animals@1"]["nodes"] == 2 and hub.verify() == {"animals@1": []}


def test_versions_latest_and_remove(hub, variables):
  assert [hub.register("m", ARCH, variables, CLASSES).ref for _ in range(3)] == \
      ["m@1", "m@2", "m@3"]
  assert hub.resolve("m") == "m@3"
  assert hub.remove("m@2") == "m@2"
  assert [e.ref for e in hub.entries()] == ["m@1", "m@3"]
  assert hub.remove("m") == "m@3"
  assert hub.register("m", ARCH, variables, CLASSES).ref == "m@4"  # never reused
  with pytest.raises(registry.HubError, match="m@2 was removed"):
    hub.show("m@2")
  with pytest.raises(registry.HubError, match="No version 5 of 'm'; it has 1, 4"):
    hub.show("m@5")
  with pytest.raises(registry.HubError, match="No model 'zebra'"):
    hub.load("zebra")
  kept = {hub.show("m@1").blob, hub.show("m@4").blob}
  assert set(hub.layout.blob_ids()) == kept  # the removed entries' files are gone


@pytest.mark.parametrize("name", ["../x", "a/b", "", "x" * 300, "x@1", "..", ".hidden", "a b"])
def test_bad_names_are_refused_before_any_write(hub, variables, name):
  with pytest.raises(registry.HubError, match="model name|Model name"):
    hub.register(name, ARCH, variables, CLASSES)
  assert hub.layout.blob_ids() == [] and hub.layout.names() == []
  assert not (hub.directory.parent / "x").exists()


def test_variables_of_another_architecture_are_refused(hub, variables):
  other = dict(ARCH, num_classes=4)
  with pytest.raises(registry.HubError, match=r"do not fit the architecture.*head"):
    hub.register("wrong", other, variables, CLASSES + ("pig",))
  with pytest.raises(registry.HubError, match="3 class names and 3 nodes for a model with 4"):
    hub.register("wrong", other, functional.init_variables(other), CLASSES)
  assert hub.layout.blob_ids() == [] and hub.layout.names() == []


def test_tampered_files_are_reported_and_not_loaded(hub, variables):
  hub.register("good", ARCH, variables, CLASSES)
  hub.register("bad", ARCH, variables, CLASSES)
  folder = hub.entry_folder("bad@1") / registry.VARIABLES_DIR
  biggest = max((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
  data = bytearray(biggest.read_bytes())
  data[len(data) // 2] ^= 0xFF
  biggest.write_bytes(bytes(data))
  report = hub.verify()
  assert report["good@1"] == []
  assert report["bad@1"] == [f"{biggest.relative_to(folder.parent)} does not match its checksum"]
  with pytest.raises(registry.CorruptEntry, match="bad@1 is corrupted.*does not match"):
    hub.load("bad")
  hub.load("good")
  manifest = hub.manifest_path("good@1")
  manifest.write_text(manifest.read_text().replace('"cat"', '"lion"'))
  assert hub.verify("good") == {"good@1": ["its manifest was modified after it was committed"]}


@pytest.mark.slow
@pytest.mark.integration
def test_four_processes_registering_25_each_lose_nothing(tmp_path, subprocess_env):
  hub_dir = tmp_path / "hub"
  procs = [subprocess.Popen([sys.executable, "-c", REGISTER_SCRIPT, str(hub_dir), f"p{i}", "25"],
                            cwd=REPO_ROOT, env=subprocess_env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True) for i in range(4)]
  outputs = [p.communicate(timeout=600)[0] for p in procs]
  assert all(p.returncode == 0 for p in procs), "\n".join(o[-2000:] for o in outputs)
  hub = registry.Hub(hub_dir)
  refs = {e.ref for e in hub.entries()}
  assert len(refs) == 100
  assert {f"shared@{v}" for v in range(1, 21)} <= refs  # 4 x 5 racing versions, none lost
  assert all(problems == [] for problems in hub.verify().values())
  assert len(hub.layout.blob_ids()) == 100  # one blob an entry, none left over


@pytest.mark.slow
@pytest.mark.integration
def test_a_process_killed_mid_register_leaves_no_half_entry(tmp_path, subprocess_env):
  hub_dir = tmp_path / "hub"
  for delay in (0.0, 0.05, 0.13):  # the kill lands at different points of a registration
    proc = subprocess.Popen([sys.executable, "-c", REGISTER_SCRIPT, str(hub_dir), "k", "1000"],
                            cwd=REPO_ROOT, env=subprocess_env, stdout=subprocess.PIPE, text=True)
    for _ in range(3):  # wait until it is registering steadily
      assert proc.stdout.readline().startswith("registered"), "the registering process failed"
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    hub = registry.Hub(hub_dir)
    # An entry is either committed (whole) or absent: every listed entry verifies, and at
    # most the killed registration's blob is unreferenced, until it is old enough to collect.
    refs = [e.ref for e in hub.entries()]
    assert set(hub.index()) == set(refs)
    assert all(problems == [] for problems in hub.verify().values())
    assert len(hub.layout.blob_ids()) - len(refs) <= 1
    hub.collect_garbage(stale_after_s=0)
    assert len(hub.layout.blob_ids()) == len(refs)
    hub.remove(refs[0])
    assert all(problems == [] for problems in hub.verify().values())


def test_the_index_is_a_cache_rebuilt_from_the_manifests(hub, variables):
  hub.register("a", ARCH, variables, CLASSES)
  hub.register("b", ARCH, variables, CLASSES)
  (hub.directory / "index.json").unlink()
  hub.register("c", ARCH, variables, CLASSES)
  assert set(hub.index()) == {"a@1", "b@1", "c@1"}
  (hub.directory / "index.json").write_text("{broken")
  assert set(hub.index()) == {"a@1", "b@1", "c@1"}
  assert [e.ref for e in hub.entries()] == ["a@1", "b@1", "c@1"]


def _label(n=5):
  return {"responses": np.log(np.full((n, 3), 1 / 3, np.float32)),
          "pools_fingerprint": np.asarray("abc")}


def test_labels_are_stored_once_checksummed_and_removed_with_their_entry(hub, variables):
  hub.register("with", ARCH, variables, CLASSES, label=_label())
  hub.register("without", ARCH, variables, CLASSES)
  assert hub.load_label("with")["responses"].shape == (5, 3)
  assert hub.load_label("without") is None
  hub.add_label("without", _label(7))
  assert hub.load_label("without@1")["responses"].shape == (7, 3)
  with pytest.raises(registry.HubError, match="labelled already"):
    hub.add_label("without", _label())
  label_file = hub.directory / "blobs" / hub.label_record("with@1")["blob"] / "label.npz"
  label_file.write_bytes(label_file.read_bytes()[:-8] + b"tampered")
  assert hub.verify("with") == {
      "with@1": ["its label (00000001.json in labels/with/) is missing or modified"]}
  with pytest.raises(registry.CorruptEntry, match="label of with@1 is missing or modified"):
    hub.load_label("with")
  hub.remove("with")
  assert not label_file.exists()
  with pytest.raises(registry.HubError, match="no objects"):
    hub.register("objects", ARCH, variables, CLASSES, label={"x": np.array([{}], object)})
  assert set(hub.index()) == {"without@1"}  # refused before anything was written
