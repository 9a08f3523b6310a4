"""Sharing experts between hubs: export -> import gives identical predictions and labels,
importing twice writes nothing, and a tampered, truncated or unsafe archive is refused with
nothing written."""

import io
import json
import subprocess
import sys
import tarfile

import numpy as np
import pytest

from conftest import REPO_ROOT
from mll_jax.hub import functional, labeling, registry, sharing

ARCH = {"task": "supervised", "model": {"variant": "mu", "patch_size": 4, "pool": "gap"},
        "image_size": 28, "channels": 1, "num_classes": 3}
IMAGES = np.random.default_rng(0).integers(0, 256, (12, 28, 28, 1), dtype=np.uint8)


def _pools(seed=0) -> labeling.Pools:
  images = np.random.default_rng(seed).integers(0, 256, (8, 28, 28, 1), dtype=np.uint8)
  return labeling.Pools(images, np.array([0] * 4 + [1] * 4, np.int32), ("n01", "n02"),
                        (np.arange(4), np.arange(4, 8)))


@pytest.fixture
def source_hub(tmp_path):
  hub = registry.Hub(tmp_path / "a")
  hub.set_pools(_pools())
  variables = functional.init_variables(ARCH, seed=1)
  label = labeling.label_model(functional.apply_fn(ARCH), variables, hub.load_pools())
  hub.register("equines", ARCH, variables, ("zebra", "horse", "cat"), ("z", "h", "c"),
               label=label, source="a training run")
  return hub


def _snapshot(hub) -> dict:
  """Every file of the hub (path -> bytes), to show that nothing was written."""
  return {str(p.relative_to(hub.directory)): p.read_bytes()
          for p in sorted(hub.directory.rglob("*")) if p.is_file()}


def test_round_trip_gives_identical_predictions_and_labels(source_hub, tmp_path):
  archive = tmp_path / "equines.tar"
  assert sharing.export_entry(source_hub, "equines", archive) == "equines@1"
  target = registry.Hub(tmp_path / "b")
  target.set_pools(_pools())  # the same pools: the label travels as it is
  ref, how = sharing.import_entry(target, archive)
  assert ref == "equines@1" and "with its label" in how
  (apply_a, vars_a), (apply_b, vars_b) = source_hub.load("equines"), target.load(ref)
  np.testing.assert_array_equal(np.asarray(apply_a(vars_a, IMAGES)),
                                np.asarray(apply_b(vars_b, IMAGES)))
  label_a, label_b = source_hub.load_label("equines"), target.load_label(ref)
  assert label_a.keys() == label_b.keys()
  for key in label_a:
    np.testing.assert_array_equal(label_a[key], label_b[key])
  shown = target.show(ref)
  assert shown.classes == ("zebra", "horse", "cat") and shown.nodes == ("z", "h", "c")
  assert target.verify() == {ref: []}
  # Importing the same archive again finds the entry and writes nothing.
  before = _snapshot(target)
  assert sharing.import_entry(target, archive) == (ref, "already in this hub (nothing written)")
  assert _snapshot(target) == before


def test_other_pools_label_the_import_anew(source_hub, tmp_path):
  archive = tmp_path / "equines.tar"
  sharing.export_entry(source_hub, "equines", archive)
  target = registry.Hub(tmp_path / "b")
  target.set_pools(_pools(seed=5))
  ref, how = sharing.import_entry(target, archive)
  assert "labelled anew" in how
  assert str(target.load_label(ref)["pools_fingerprint"]) == _pools(seed=5).fingerprint
  bare = registry.Hub(tmp_path / "c")  # no pools: imported unlabelled
  ref, how = sharing.import_entry(bare, archive)
  assert "unlabelled" in how and bare.load_label(ref) is None


def _rewrite(archive, out, change):
  """A copy of `archive` with `change(name, data) -> (name, data) | None` applied per member."""
  with tarfile.open(archive) as src, tarfile.open(out, "w") as dst:
    for member in src:
      data = src.extractfile(member).read()
      changed = change(member.name, data)
      if changed is None:
        continue
      info = tarfile.TarInfo(changed[0])
      info.size = len(changed[1])
      dst.addfile(info, io.BytesIO(changed[1]))


def _flip_a_byte(name, data):
  if name.startswith("variables/") and len(data) > 100:
    data = bytearray(data)
    data[len(data) // 2] ^= 0xFF
    return name, bytes(data)
  return name, data


def _unsafe_name(name, data):
  return ("../../escaped.txt" if name == "label.npz" else name), data


def _tampered_entry(name, data):
  if name == "entry.json":
    return name, data.replace(b'"zebra"', b'"lion"')
  return name, data


@pytest.mark.parametrize("change,why", [
    (_flip_a_byte, "does not match its checksum"),
    (_unsafe_name, "'../../escaped.txt', which is not a plain file of an entry"),
    (_tampered_entry, "entry.json does not match the manifest's checksum"),
])
def test_a_bad_archive_is_refused_with_nothing_written(source_hub, tmp_path, change, why):
  archive, bad = tmp_path / "good.tar", tmp_path / "bad.tar"
  sharing.export_entry(source_hub, "equines", archive)
  _rewrite(archive, bad, change)
  target = registry.Hub(tmp_path / "b")
  before = _snapshot(target)
  with pytest.raises(registry.HubError, match=why):
    sharing.import_entry(target, bad)
  assert _snapshot(target) == before and target.entries() == []
  assert not (tmp_path / "escaped.txt").exists()


def test_truncated_archives_and_links_are_refused(source_hub, tmp_path):
  archive = tmp_path / "good.tar"
  sharing.export_entry(source_hub, "equines", archive)
  truncated = tmp_path / "truncated.tar"
  truncated.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
  linked = tmp_path / "linked.tar"
  with tarfile.open(linked, "w") as out:
    link = tarfile.TarInfo("variables/innocent")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    out.addfile(link)
  target = registry.Hub(tmp_path / "b")
  with pytest.raises(registry.HubError, match="truncated or not an archive|is missing"):
    sharing.import_entry(target, truncated)
  with pytest.raises(registry.HubError, match="'variables/innocent', which is not a plain file"):
    sharing.import_entry(target, linked)
  assert target.entries() == []


@pytest.mark.slow
@pytest.mark.integration
def test_export_and_import_from_the_command_line(source_hub, tmp_path, subprocess_env):
  archive = tmp_path / "shared.tar"
  run = lambda hub_dir, *args: subprocess.run(
      [sys.executable, "-m", "mll_jax.hub", f"--hub_dir={hub_dir}", *args], cwd=REPO_ROOT,
      env=subprocess_env, capture_output=True, text=True, timeout=600)
  done = run(source_hub.directory, "export", "equines", str(archive))
  assert done.returncode == 0 and "Exported equines@1" in done.stdout, done.stderr
  done = run(tmp_path / "b", "import", str(archive))
  assert done.returncode == 0 and "Imported equines@1: imported unlabelled" in done.stdout
  archive.write_bytes(archive.read_bytes()[:1000])
  done = run(tmp_path / "c", "import", str(archive))
  assert done.returncode == 1 and "error:" in done.stderr and "Traceback" not in done.stderr
  assert json.loads((tmp_path / "b" / "index.json").read_text())["entries"].keys() == \
      {"equines@1"}
