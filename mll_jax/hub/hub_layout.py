"""Where a hub keeps what, and which of it is committed (format `mll_jax.hub/2`)::

    <hub>/HUB.json                          {"format": ...}, created once
    <hub>/manifests/<name>/<v:08d>.json     the entry name@v: architecture, classes, SDAG nodes,
                                            cost, its blob and every file's SHA-256
    <hub>/labels/<name>/<v:08d>.json        its model label: a blob and the label's SHA-256
    <hub>/removed/<name>/<v:08d>.json       its removal
    <hub>/blobs/<id>/                       files: variables/ (orbax) or label.npz, + blob.json
    <hub>/index.json                        a cache of summaries, rebuilt from the manifests
    <hub>/pools.npz                         the labelling pools

The commit protocol, the same on local disk and in buckets: every commit is one object created
only if absent (`storage.objects.create_if_absent`), written after the files it names. A
manifest commits an entry and allocates its version (of two registrars that race for `v`, one
wins and the other takes `v+1`); a label manifest commits a label; a removal record commits a
removal. Nothing is renamed, nothing is locked. Manifests are never deleted, so a version number
is never issued twice. A blob that no manifest names (a registrar killed before its commit) is
garbage, deleted once older than `STALE_BLOB_S`. Only names of the exact forms above count;
anything else in these folders is ignored.
"""

import re

from mll_jax.storage import objects

FORMAT = "mll_jax.hub/2"
MARKER = "HUB.json"
INDEX = "index.json"
BLOB_FILE = "blob.json"
LABEL_FILE = "label.npz"
VARIABLES_DIR = "variables"
STALE_BLOB_S = 3600.0  # a registration that has not committed within this is dead
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
BLOB_ID = re.compile(r"[0-9a-f]{32}")
_VERSION_FILE = re.compile(r"(\d{8})\.json")


def version_file(version: int) -> str:
  return f"{version:08d}.json"


def is_name(text: str) -> bool:
  return bool(NAME.fullmatch(text)) and ".." not in text


class Layout:
  """Paths and listings of one hub (`root` is a local path or a bucket URL, as text)."""

  def __init__(self, root: str):
    self.root = root.rstrip("/")

  def path(self, *parts) -> str:
    return "/".join([self.root, *map(str, parts)])

  def record(self, kind: str, name: str, version: int) -> str:
    """The commit object of `kind` ("manifests", "labels", "removed") for name@version."""
    return self.path(kind, name, version_file(version))

  def blob(self, blob_id: str, *parts) -> str:
    return self.path("blobs", blob_id, *parts)

  def names(self, kind: str = "manifests") -> list[str]:
    return [n for n in objects.names(self.path(kind)) if is_name(n)]

  def versions(self, kind: str, name: str) -> list[int]:
    return sorted(int(m.group(1)) for m in map(_VERSION_FILE.fullmatch,
                                               objects.names(self.path(kind, name))) if m)

  def live_refs(self) -> list[tuple[str, int]]:
    """`(name, version)` of every committed, not removed entry, sorted."""
    refs = []
    for name in self.names():
      removed = set(self.versions("removed", name))
      refs += [(name, v) for v in self.versions("manifests", name) if v not in removed]
    return sorted(refs)

  def blob_ids(self) -> list[str]:
    return [n for n in objects.names(self.path("blobs")) if BLOB_ID.fullmatch(n)]
