"""Sharing experts between hubs: one archive per entry, exported from one hub and imported into
another, verified before anything is committed.

    python -m mll_jax.hub --hub_dir=A export NAME[@V] FILE.tar
    python -m mll_jax.hub --hub_dir=B import FILE.tar

The archive is a plain tar of regular files: `manifest.json` (format, the entry's ref and the
SHA-256 of its `entry.json` and label), `entry.json` (architecture, classes, SDAG nodes and
every variables file's SHA-256), `variables/...` (the orbax checkpoint) and `label.npz` when the
entry is labelled. Nothing in it is unpickled.

Import reads every member itself (never `tarfile.extract`): a member that is not a regular
file, or whose name is absolute, holds `..` or lies outside those names, refuses the whole
archive, as does any checksum that does not match and a truncated archive; nothing is written
to the hub then. The model is registered through `Hub.register` (its atomic commit) under its
own name at the hub's next version, with `source` recording the archive's entry hash, so
importing the same entry again finds it and writes nothing; of two imports of one archive that
race, the entry with the lower version stays and the other import removes its own. Archives and
hubs may be local or in buckets (gs://, s3://), in any combination; an archive is unpacked into
a private temporary folder, never into the hub. The label comes along when the
target hub's pools are the ones it was computed on; on other pools the model is labelled anew
on the hub's own, and in a hub without pools it stays unlabelled; the result says which.
"""

import hashlib
import io
import json
import os
import pathlib
import shutil
import tarfile
import tempfile

import numpy as np

from mll_jax.hub import registry
from mll_jax.storage import locations, objects

ARCHIVE_FORMAT = "mll_jax.hub.archive/1"
MANIFEST = "manifest.json"
LABEL = "label.npz"
_SOURCE_PREFIX = "imported entry sha256:"


def export_entry(hub: registry.Hub, ref: str, path: str | os.PathLike) -> str:
  """Writes the intact entry `ref` (and its label) to the archive `path`; returns the ref.
  A corrupted entry is refused (CorruptEntry), and the archive appears only when complete."""
  ref = hub.resolve(ref)
  problems = hub.verify(ref)[ref]
  if problems:
    raise registry.CorruptEntry(f"{ref} is corrupted ({'; '.join(problems)}); not exported.")
  entry_bytes = objects.read(str(hub.manifest_path(ref)))
  folder = os.fspath(hub.entry_folder(ref))
  label = hub.label_bytes(ref)
  manifest = {"format": ARCHIVE_FORMAT, "ref": ref,
              "entry_sha256": hashlib.sha256(entry_bytes).hexdigest()}
  if label is not None:
    manifest["label_sha256"] = hashlib.sha256(label).hexdigest()
  buffer = io.BytesIO()
  with tarfile.open(fileobj=buffer, mode="w") as archive:
    _add_bytes(archive, MANIFEST, json.dumps(manifest, indent=1).encode())
    _add_bytes(archive, registry.ENTRY_FILE, entry_bytes)
    for name in sorted(json.loads(entry_bytes)["files"]):
      _add_bytes(archive, name, objects.read(f"{folder}/{name}"))
    if label is not None:
      _add_bytes(archive, LABEL, label)
  objects.write(locations.location(path), buffer.getvalue())  # whole: never half an archive
  return ref


def _add_bytes(archive: tarfile.TarFile, name: str, data: bytes) -> None:
  info = tarfile.TarInfo(name)
  info.size = len(data)
  info.mode = 0o644
  archive.addfile(info, io.BytesIO(data))


def import_entry(hub: registry.Hub, path: str | os.PathLike) -> tuple[str, str]:
  """Imports the archive at `path`; returns `(ref, what happened)`. Raises HubError, writing
  nothing, for a tampered, truncated or unsafe archive."""
  with tempfile.TemporaryDirectory(prefix="mll_jax_import_") as staging:
    staging = pathlib.Path(staging)
    manifest, entry = _unpack_verified(path, staging)
    imported_as = _SOURCE_PREFIX + manifest["entry_sha256"]
    existing = _imports_of(hub, entry["name"], imported_as)
    if existing:
      return existing[0].ref, "already in this hub (nothing written)"
    architecture = entry["architecture"]
    variables = registry.restore_variables(staging / registry.VARIABLES_DIR, architecture)
    label, how = _label_for(hub, staging, architecture, variables)
    new = hub.register(entry["name"], architecture, variables, entry["classes"],
                       entry["nodes"], label=label, source=imported_as)
  first = _imports_of(hub, entry["name"], imported_as)[0]
  if first.ref != new.ref:  # another import of this archive committed first
    hub.remove(new.ref)
    return first.ref, "already in this hub (imported at the same time by another process)"
  return new.ref, how


def _imports_of(hub: registry.Hub, name: str, imported_as: str) -> list:
  """The live entries of `name` imported from the same archive entry, oldest first."""
  return [e for e in hub.entries() if e.name == name and e.source == imported_as]


def _unpack_verified(path, staging: pathlib.Path) -> tuple[dict, dict]:
  """Reads every member into `staging` after checking its name and kind, then checks every
  checksum; the manifest and entry.json as dicts."""
  def refuse(why: str) -> registry.HubError:
    return registry.HubError(f"{path} was not imported: {why}. Nothing was written.")

  try:
    data = objects.read(locations.location(path))
  except (objects.StorageError, ValueError) as e:
    raise registry.HubError(f"{path} could not be read: {e}") from None
  if data is None or (not locations.is_remote(path) and not os.path.isfile(path)):
    raise registry.HubError(f"{path} is not a file; give an archive made by `export`.")
  try:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
      for member in archive:
        name = member.name
        parts = pathlib.PurePosixPath(name).parts
        if (not member.isfile() or name.startswith("/") or ".." in parts or "\\" in name or
            not (name in (MANIFEST, registry.ENTRY_FILE, LABEL) or
                 (parts and parts[0] == registry.VARIABLES_DIR and len(parts) > 1))):
          raise refuse(f"it holds {name!r}, which is not a plain file of an entry (links, "
                       "absolute paths and '..' are refused)")
        target = staging / name
        target.parent.mkdir(parents=True, exist_ok=True)
        with archive.extractfile(member) as source, target.open("wb") as out:
          shutil.copyfileobj(source, out)
  except (tarfile.TarError, EOFError, OSError) as e:
    raise refuse(f"it is truncated or not an archive ({type(e).__name__}: {e})") from None
  try:
    manifest = json.loads((staging / MANIFEST).read_text())
    entry_bytes = (staging / registry.ENTRY_FILE).read_bytes()
    entry = json.loads(entry_bytes)
  except (FileNotFoundError, json.JSONDecodeError) as e:
    raise refuse(f"its manifest or entry.json is missing or unreadable ({e})") from None
  if manifest.get("format") != ARCHIVE_FORMAT:
    raise refuse(f"its format is {manifest.get('format')!r}, not {ARCHIVE_FORMAT!r}")
  if hashlib.sha256(entry_bytes).hexdigest() != manifest.get("entry_sha256"):
    raise refuse("entry.json does not match the manifest's checksum")
  registry.validate_name(entry.get("name", ""))
  present = {str(p.relative_to(staging)) for p in staging.rglob("*") if p.is_file()}
  expected = set(entry["files"])
  if present - expected - {MANIFEST, registry.ENTRY_FILE, LABEL}:
    raise refuse(f"it holds files its entry does not list: "
                 f"{sorted(present - expected - {MANIFEST, registry.ENTRY_FILE, LABEL})}")
  for name in sorted(expected):
    if name not in present:
      raise refuse(f"{name} is missing")
    if hashlib.sha256((staging / name).read_bytes()).hexdigest() != entry["files"][name]:
      raise refuse(f"{name} does not match its checksum")
  label = staging / LABEL
  if label.exists() != ("label_sha256" in manifest) or (
      label.exists() and hashlib.sha256(label.read_bytes()).hexdigest() !=
      manifest["label_sha256"]):
    raise refuse("its label does not match the manifest")
  return manifest, entry


def _label_for(hub: registry.Hub, staging: pathlib.Path, architecture: dict,
               variables) -> tuple[dict | None, str]:
  """The label to register with, and a sentence saying where it came from."""
  label_path = staging / LABEL
  label = None
  if label_path.exists():
    with np.load(label_path, allow_pickle=False) as data:
      label = {k: data[k] for k in data.files}
  if not hub.pools_path.exists():  # a label only means something on the pools it came from
    return None, ("imported unlabelled: this hub has no pools yet (build them with `pools`, "
                  "then `label` it)")
  pools = hub.load_pools()
  if label is not None and str(label.get("pools_fingerprint")) == pools.fingerprint:
    return label, "imported with its label (computed on the same pools)"
  from mll_jax.hub import functional, labeling
  fresh = labeling.label_model(functional.apply_fn(architecture), variables, pools)
  return fresh, "labelled anew on this hub's pools (its label was computed on other pools)"
