"""What `Hub.verify` and `Hub.index` check and cache: each entry's problems, and the index of
summaries with each manifest's hash as first seen.

An entry is intact when its manifest names itself (its name and version are its path's), its
blob is a blob id no other entry uses, every file the manifest lists is in that blob with its
SHA-256 and no other file is, nothing is a symbolic link or leads outside the hub, its label
(if committed) matches its SHA-256, and its manifest still hashes to what the index recorded.
A problem is reported per entry: one unreadable manifest does not stop the others' checks.
"""

import hashlib
import json
import os
import pathlib

from mll_jax.hub import hub_layout
from mll_jax.storage import locations, objects


def _sha256(data: bytes) -> str:
  return hashlib.sha256(data).hexdigest()


def refresh_index(hub) -> dict:
  """`{ref: summary}` of the live entries: the cached index (`index.json`, a cache only),
  with entries it lacks added from their manifests and removed ones dropped; rewritten if it
  changed. Concurrent rewrites can only lose cached records, which the next call adds back."""
  from mll_jax.hub import registry  # pylint: disable=import-outside-toplevel (cycle)
  path = hub.layout.path(hub_layout.INDEX)
  cached = {}
  try:
    data = json.loads(objects.read(path) or b"{}")
    if data.get("format") == hub_layout.FORMAT:
      cached = data.get("entries", {})
  except ValueError:  # a torn or edited cache is rebuilt
    pass
  records, changed = {}, False
  for name, version in hub.layout.live_refs():
    ref = f"{name}@{version}"
    record = cached.get(ref)
    if record is None:
      manifest = objects.read(hub.layout.record("manifests", name, version))
      try:
        entry = registry.entry_from_json(manifest)
      except (ValueError, TypeError, KeyError):
        continue  # `verify` reports it
      record, changed = {**entry.summary(), "manifest_sha256": _sha256(manifest)}, True
    label = None if "label_sha256" in record else hub.label_record(ref)  # labels never change
    if label and record.get("label_sha256") != label.get("sha256"):
      record, changed = {**record, "label_sha256": label.get("sha256")}, True
    records[ref] = record
  if changed or set(cached) != set(records):
    objects.write(path, json.dumps({"format": hub_layout.FORMAT, "entries": records},
                                   indent=1, sort_keys=True).encode())
  return records


def leaves_the_entry(relative: str) -> bool:
  """Whether a path listed in an entry would resolve outside the entry's folder."""
  path = pathlib.PurePosixPath(relative)
  return path.is_absolute() or ".." in path.parts or relative.startswith("~") or \
      "\\" in relative


def _links_or_outside(hub, paths: list[str]) -> list[str]:
  """The local paths among `paths` that are links or resolve outside the hub (a bucket has
  neither)."""
  if locations.is_remote(hub.layout.root):
    return []
  root = os.path.realpath(hub.layout.root)
  bad = []
  for path in paths:
    if os.path.islink(path) or not os.path.realpath(path).startswith(root + os.sep):
      bad.append(os.path.relpath(path, hub.layout.root))
  return bad


def problems(hub, ref: str, record: dict) -> list[str]:
  """Everything wrong with the entry `ref` (empty when intact)."""
  from mll_jax.hub import registry  # pylint: disable=import-outside-toplevel (cycle)
  name, version = registry.parse_ref(ref)
  manifest_path = hub.layout.record("manifests", name, version)
  found = [f"{p} is a symbolic link or leads outside the hub (not followed)"
           for p in _links_or_outside(hub, [hub.layout.path("manifests"), manifest_path])]
  if found:
    return found
  manifest = objects.read(manifest_path)
  try:
    entry = registry.entry_from_json(manifest)
  except (ValueError, TypeError, KeyError) as e:
    return [f"its manifest is unreadable ({type(e).__name__}: {str(e)[:100]})"]
  if (entry.name, entry.version) != (name, version):
    found.append(f"its manifest claims to be {entry.name}@{entry.version}")
  if record.get("manifest_sha256") not in (None, _sha256(manifest)):
    found.append("its manifest was modified after it was committed")
  if not hub_layout.BLOB_ID.fullmatch(str(entry.blob)):
    return found + [f"its blob {entry.blob!r} is not a blob id"]
  sharers = [r for r in _other_entries_using(hub, entry.blob, ref)]
  found += [f"its files are those of {r} too" for r in sharers]
  blob = hub.layout.blob(entry.blob)
  outside = _links_or_outside(hub, [hub.layout.path("blobs"), blob])
  if outside:
    return found + [f"{p} is a symbolic link or leads outside the hub (not followed)"
                    for p in outside]
  expected = dict(entry.files)
  listed_outside = sorted(p for p in expected if leaves_the_entry(p))
  found += [f"{p} points outside the entry (not read)" for p in listed_outside]
  for p in listed_outside:
    del expected[p]
  actual = [p for p in objects.walk(blob) if p != hub_layout.BLOB_FILE]
  links = [p for p in actual if _links_or_outside(hub, [f"{blob}/{p}"])]
  found += [f"{p} is a symbolic link (not followed: an entry holds regular files only)"
            for p in links]
  actual = [p for p in actual if p not in links]
  found += [f"{p} is missing" for p in sorted(set(expected) - set(actual))]
  found += [f"{p} is not part of the entry" for p in sorted(set(actual) - set(expected))]
  found += [f"{p} does not match its checksum" for p in sorted(expected)
            if p in actual and _sha256(objects.read(f"{blob}/{p}") or b"") != expected[p]]
  found += label_link_problems(hub, name, version, hub.label_record(ref) or {})
  try:
    hub.label_bytes(ref)
  except registry.CorruptEntry:
    found.append(f"its label ({hub_layout.version_file(version)} in labels/{name}/) is missing "
                 "or modified")
  except ValueError:
    found.append("its label record is unreadable")
  return found


def label_link_problems(hub, name: str, version: int, record: dict) -> list[str]:
  """Links (or paths leading outside the hub) on the way to a committed label."""
  if not hub_layout.BLOB_ID.fullmatch(str(record.get("blob"))):
    return []
  blob = hub.layout.blob(record["blob"])
  return [f"{p} is a symbolic link or leads outside the hub (not followed)"
          for p in _links_or_outside(hub, [hub.layout.path("labels"),
                                           hub.layout.record("labels", name, version),
                                           hub.layout.path("blobs"), blob,
                                           f"{blob}/{hub_layout.LABEL_FILE}"])]


def _other_entries_using(hub, blob: str, ref: str) -> list[str]:
  others = []
  for name, version in hub.layout.live_refs():
    other = f"{name}@{version}"
    if other == ref:
      continue
    try:
      if json.loads(objects.read(hub.layout.record("manifests", name, version)) or b"{}") \
          .get("blob") == blob:
        others.append(other)
    except ValueError:
      continue
  return others
