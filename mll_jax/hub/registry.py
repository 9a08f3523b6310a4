"""The model hub: functional, immutable, checksummed entries on local disk or in a bucket
(gs://, s3://), safe to write from several processes and machines at once.

The layout and the commit protocol are in `hub_layout`: an entry's files go into a fresh blob
first, and one create-if-absent manifest commits them and allocates the version; labels and
removals are committed the same way. There is no lock to wait for and no rename to interrupt:
a killed registrar leaves an unreferenced blob (deleted later), never a half entry, and two
registrars of one name get distinct versions.

Trust rests on the commits, not on what lies in the folders: only committed manifests are
entries, a manifest must name itself (its name and version are those of its path) and a blob
that no other entry uses, and `verify` checks every file against the manifest's SHA-256, refuses
links and paths that leave the hub, and compares each manifest with the hash the index cached
when it first saw it. Nothing is unpickled (orbax for arrays, JSON for metadata,
`np.load(allow_pickle=False)` for labels).
"""

import dataclasses
import datetime
import hashlib
import io
import json
import os
import pathlib
import re
import socket
import time
import uuid

import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from mll_jax.hub import entry_checks, functional, hub_layout, labeling
from mll_jax.hub.hub_layout import FORMAT, LABEL_FILE, VARIABLES_DIR  # noqa: F401 (public)
from mll_jax.storage import locations, objects, orbax_s3

ENTRY_FILE = "entry.json"  # an entry's manifest, as an export archive names it
MAX_NAME_LENGTH = 100
_REF = re.compile(r"(?P<name>[^@]*)(@(?P<version>\d+))?")


class HubError(RuntimeError):
  """A refused or failed hub operation; the message says what to do."""


class CorruptEntry(HubError):
  """An entry whose files do not match their checksums."""


def validate_name(name: str) -> str:
  """A model name: letters, digits, `.`, `_`, `-`, starting with a letter or digit, at most
  100 characters. Anything else (`../x`, `a/b`, the empty name, `x@1`) is refused before any write."""
  if not isinstance(name, str) or not name:
    raise HubError("A model name must be a non-empty string.")
  if len(name) > MAX_NAME_LENGTH:
    raise HubError(f"Model name of {len(name)} characters is too long (at most "
                   f"{MAX_NAME_LENGTH}).")
  if not hub_layout.is_name(name):
    raise HubError(f"Invalid model name {name!r}: use letters, digits, '.', '_' and '-', start "
                   "with a letter or digit, no '..' (versions are added as name@N).")
  return name


@dataclasses.dataclass(frozen=True)
class Entry:
  """What an entry's manifest holds (see the module docstring)."""
  name: str
  version: int
  architecture: dict
  classes: tuple[str, ...]
  nodes: tuple[str, ...]      # SDAG node id of each class ("" where it has none)
  flops_per_image: float
  parameters: int
  files: dict                 # path relative to the blob -> sha256
  created: str
  source: str = ""
  blob: str = ""              # the blob folder holding the files
  size_bytes: int = 0         # of the files

  @property
  def ref(self) -> str:
    return f"{self.name}@{self.version}"

  def to_json(self) -> dict:
    data = dataclasses.asdict(self)
    data.update(classes=list(self.classes), nodes=list(self.nodes))
    return data

  def summary(self) -> dict:
    return {"classes": len(self.classes), "nodes": len([n for n in self.nodes if n]),
            "flops_per_image": self.flops_per_image, "parameters": self.parameters,
            "size_bytes": self.size_bytes}


def parse_ref(ref: str) -> tuple[str, int | None]:
  """`"name@3"` -> ("name", 3); `"name"` -> ("name", None) (the latest version)."""
  match = _REF.fullmatch(ref or "")
  if not match:
    raise HubError(f"Invalid model reference {ref!r}: use NAME or NAME@VERSION.")
  version = match.group("version")
  return validate_name(match.group("name")), int(version) if version else None


def _sha256(data: bytes) -> str:
  return hashlib.sha256(data).hexdigest()


def entry_from_json(data: bytes) -> Entry:
  """An Entry from manifest bytes; ValueError (naming the problem) if they are not one."""
  record = json.loads(data)
  if not isinstance(record, dict) or record.pop("format", None) != FORMAT:
    raise ValueError(f"not a {FORMAT} manifest")
  record["classes"], record["nodes"] = tuple(record["classes"]), tuple(record["nodes"])
  return Entry(**record)


class Hub:
  """A hub folder or bucket prefix. Every method is safe to call from several processes (and
  machines) at once."""

  def __init__(self, directory: str | os.PathLike, create: bool = True):
    try:
      self.directory = locations.location(directory)
    except ValueError as e:
      raise HubError(str(e)) from None
    self.layout = hub_layout.Layout(os.fspath(self.directory))
    if not locations.is_remote(self.directory) and self.directory.exists() and \
        not self.directory.is_dir():
      raise HubError(f"Hub path {str(self.directory)!r} is a file; give a directory.")
    marker = self._read(hub_layout.MARKER)
    if marker is None:
      if objects.read(self.layout.path(hub_layout.INDEX)) is not None:
        raise HubError(f"{self.directory} is a hub of an older mll_jax (format 1, before "
                       "commits were create-if-absent manifests); rebuild it (experiments/"
                       "build_hub.py) or export its entries with the older release.")
      if not create:
        raise HubError(f"No hub at {str(self.directory)!r}; register a model to create one.")
      objects.create_if_absent(self.layout.path(hub_layout.MARKER),
                               json.dumps({"format": FORMAT}).encode())
    elif json.loads(marker).get("format") != FORMAT:
      raise HubError(f"{self.directory} is not an {FORMAT} hub.")

  def _read(self, *parts) -> bytes | None:
    try:
      return objects.read(self.layout.path(*parts))
    except objects.StorageError as e:
      raise HubError(str(e)) from None

  # ----- register -----

  def register(self, name: str, architecture: dict, variables, classes, nodes=None, *,
               label: dict | None = None, source: str = "") -> Entry:
    """Adds `name@<next version>`: `variables` (`{"params", ["model_state"]}`) of the model
    `architecture` describes, its `classes` and their SDAG `nodes`, and optionally its `label`
    (`labeling.label_model`'s arrays). Returns the entry."""
    validate_name(name)
    classes = tuple(str(c) for c in classes)
    nodes = tuple(nodes) if nodes is not None else ("",) * len(classes)
    if len(classes) != architecture.get("num_classes") or len(nodes) != len(classes):
      raise HubError(f"{name}: {len(classes)} class names and {len(nodes)} nodes for a model "
                     f"with {architecture.get('num_classes')} outputs; give one of each per "
                     "output.")
    _check_variables(architecture, variables, name)
    label_bytes = _label_bytes(label) if label is not None else None
    self.collect_garbage()
    blob = self._new_blob()
    committed = False
    try:
      folder = locations.location(self.layout.blob(blob, VARIABLES_DIR))
      _checkpointer(folder).save(folder, variables)
      contents = {f"{VARIABLES_DIR}/{p}": objects.read(self.layout.blob(blob, VARIABLES_DIR, p))
                  for p in objects.walk(self.layout.blob(blob, VARIABLES_DIR))}
      files = {p: _sha256(data) for p, data in contents.items()}
      size = sum(map(len, contents.values()))
      flops = functional.flops_per_image(architecture)
      for _ in range(10_000):  # each lost race means another registrar took that version
        version = 1 + max(self.layout.versions("manifests", name), default=0)
        entry = Entry(name, version, architecture, classes, nodes, flops,
                      functional.parameter_count(variables), files,
                      datetime.datetime.now(datetime.timezone.utc).isoformat(), source, blob,
                      size)
        manifest = json.dumps({"format": FORMAT, **entry.to_json()}, indent=1,
                              sort_keys=True).encode()
        if objects.create_if_absent(self.layout.record("manifests", name, version), manifest):
          committed = True  # the commit point
          break
      else:
        raise HubError(f"Could not allocate a version of {name}: too many concurrent writers.")
    finally:
      if not committed:
        objects.remove_tree(self.layout.blob(blob))
    if label_bytes is not None:
      self._commit_label(entry.ref, label_bytes)
    self.index()  # caches the new manifest's hash, which `verify` later compares with
    return entry

  def _new_blob(self) -> str:
    blob = uuid.uuid4().hex
    objects.write(self.layout.blob(blob, hub_layout.BLOB_FILE), json.dumps(
        {"created": time.time(), "holder": f"{socket.gethostname()} pid {os.getpid()}"}).encode())
    return blob

  def _commit_label(self, ref: str, label_bytes: bytes) -> bool:
    """Writes the label to a blob and commits it; False if the entry had one already."""
    name, version = parse_ref(ref)
    blob = self._new_blob()
    objects.write(self.layout.blob(blob, LABEL_FILE), label_bytes)
    record = json.dumps({"blob": blob, "sha256": _sha256(label_bytes)}).encode()
    if objects.create_if_absent(self.layout.record("labels", name, version), record):
      return True
    objects.remove_tree(self.layout.blob(blob))
    return False

  def collect_garbage(self, stale_after_s: float = hub_layout.STALE_BLOB_S) -> list[str]:
    """Deletes blobs that no live entry or label names and that are older than
    `stale_after_s` (left by killed registrars, or by removals cut short); returns their ids."""
    blobs = self.layout.blob_ids()  # listed before the manifests: a blob committed meanwhile
    live = self.layout.live_refs()  # is then seen as used
    labels = {name: set(self.layout.versions("labels", name)) for name in {n for n, _ in live}}
    labelled = sum(version in labels[name] for name, version in live)
    if len(blobs) <= len(live) + labelled:  # one blob an entry and a label: nothing to collect
      return []                             # (listings only; a bucket's reads are the cost)
    used = set()
    for name, version in live:
      for kind in ("manifests", "labels"):
        data = objects.read(self.layout.record(kind, name, version))
        try:
          used.add(json.loads(data)["blob"] if data else None)
        except (ValueError, KeyError, TypeError):
          pass
    deleted = []
    for blob in blobs:
      if blob in used:
        continue
      created = self._blob_created(blob)
      if time.time() - created > stale_after_s:
        objects.remove_tree(self.layout.blob(blob))
        deleted.append(blob)
    return deleted

  def _blob_created(self, blob: str) -> float:
    """When a blob was started: its blob.json's time; for a local folder whose blob.json is not
    written yet (it is the first file, so only in that instant), the folder's time."""
    try:
      data = objects.read(self.layout.blob(blob, hub_layout.BLOB_FILE))
      if data is not None:
        return float(json.loads(data).get("created", 0.0))
    except (ValueError, TypeError, AttributeError):
      return 0.0
    if locations.is_remote(self.layout.root):
      return 0.0  # an object exists only once written, and blob.json is written first
    try:
      return os.path.getmtime(self.layout.blob(blob))
    except FileNotFoundError:
      return time.time()

  # ----- read -----

  def resolve(self, ref: str) -> str:
    """`name` -> `name@<latest>`; `name@v` checked to exist (and not removed)."""
    name, version = parse_ref(ref)
    versions = self.layout.versions("manifests", name)
    removed = set(self.layout.versions("removed", name))
    live = [v for v in versions if v not in removed]
    if version is not None and version in removed:
      raise HubError(f"{name}@{version} was removed from the hub {self.directory}.")
    if not live:
      raise HubError(f"No model {name!r} in the hub {self.directory}; `list` shows what it "
                     "has.")
    if version is None:
      return f"{name}@{live[-1]}"
    if version not in live:
      raise HubError(f"No version {version} of {name!r}; it has "
                     f"{', '.join(str(v) for v in live)}.")
    return f"{name}@{version}"

  def manifest_path(self, ref: str) -> "pathlib.Path | epath.Path":
    """Where the manifest of `ref` (`name@v`) is."""
    name, version = parse_ref(ref)
    return locations.location(self.layout.record("manifests", name, version))

  def entry_folder(self, ref: str) -> "pathlib.Path | epath.Path":
    """The blob folder holding the files of the entry `ref`."""
    return locations.location(self.layout.blob(self.show(ref).blob))

  def _entry(self, ref: str) -> Entry:
    name, version = parse_ref(ref)
    data = objects.read(self.layout.record("manifests", name, version))
    try:
      return entry_from_json(data)
    except (ValueError, TypeError, KeyError) as e:
      raise CorruptEntry(f"The manifest of {ref} is unreadable ({e}); `verify` lists it.") \
          from None

  def entries(self) -> list[Entry]:
    """Every entry with a readable manifest, sorted by name and version (`verify` names the
    others)."""
    found = []
    for name, version in self.layout.live_refs():
      try:
        found.append(self._entry(f"{name}@{version}"))
      except CorruptEntry:
        continue
    return found

  def index(self) -> dict:
    """Each entry's summary (classes, nodes, FLOPs, size, checksums), from the cached index,
    completed from the manifests."""
    return entry_checks.refresh_index(self)

  def show(self, ref: str) -> Entry:
    """The entry `ref` (`name` for the latest version, or `name@v`)."""
    return self._entry(self.resolve(ref))

  def verify(self, ref: str | None = None) -> dict[str, list[str]]:
    """Problems per entry (all entries, or `ref`); empty lists mean intact."""
    refs = [self.resolve(ref)] if ref else [f"{n}@{v}" for n, v in self.layout.live_refs()]
    index = self.index()
    return {r: entry_checks.problems(self, r, index.get(r, {})) for r in refs}

  def is_removed(self, ref: str) -> bool:
    name, version = parse_ref(ref)
    return objects.read(self.layout.record("removed", name, version)) is not None

  def load(self, ref: str):
    """`(apply_fn, variables)` of an intact entry; `apply_fn(variables, images) -> logits`.
    Raises CorruptEntry (naming the files) if any checksum does not match, and HubError if the
    entry was removed meanwhile."""
    ref = self.resolve(ref)
    problems = self.verify(ref)[ref]
    try:
      if problems:
        raise CorruptEntry(f"Hub entry {ref} is corrupted: {'; '.join(problems)}. It was not "
                           f"loaded; remove it (`remove {ref}`) and register the model again.")
      entry = self._entry(ref)
      variables = restore_variables(locations.location(self.layout.blob(entry.blob, VARIABLES_DIR)),
                                    entry.architecture)
    except Exception:
      if self.is_removed(ref):
        raise HubError(f"{ref} was removed while it was being loaded.") from None
      raise
    return functional.apply_fn(entry.architecture), variables

  def label_record(self, ref: str) -> dict | None:
    """The committed label of `ref` (`{"blob", "sha256"}`), or None."""
    name, version = parse_ref(ref)
    data = objects.read(self.layout.record("labels", name, version))
    return json.loads(data) if data else None

  def label_bytes(self, ref: str) -> bytes | None:
    """The label file's bytes as committed (checked), or None if unlabelled."""
    record = self.label_record(ref)
    if record is None:
      return None
    data = None
    name, version = parse_ref(ref)
    links = entry_checks.label_link_problems(self, name, version, record)
    if hub_layout.BLOB_ID.fullmatch(str(record.get("blob"))) and not links:
      data = objects.read(self.layout.blob(record["blob"], LABEL_FILE))
    if data is None or _sha256(data) != record.get("sha256"):
      raise CorruptEntry(f"The label of {ref} is missing or modified; remove the entry and "
                         "register the model again.")
    return data

  def load_label(self, ref: str) -> dict | None:
    """The entry's model label arrays (see `labeling`), or None if it has none yet. Raises
    CorruptEntry if the label file does not match its checksum."""
    data = self.label_bytes(self.resolve(ref))
    if data is None:
      return None
    with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
      return {k: arrays[k] for k in arrays.files}

  # ----- pools and labels -----

  @property
  def pools_path(self) -> "pathlib.Path | epath.Path":
    return locations.location(self.layout.path(labeling.POOLS_FILE))

  def set_pools(self, pools: "labeling.Pools") -> None:
    """Installs the hub's labelling pools. Refused once entries are labelled on other pools:
    their labels would no longer describe the same images."""
    current = self.load_pools() if self.pools_path.exists() else None
    if current is not None and current.fingerprint != pools.fingerprint and any(
        self.label_record(f"{n}@{v}") for n, v in self.layout.live_refs()):
      raise HubError("This hub's entries are labelled on its current pools; build a new hub "
                     "for new pools.")
    labeling.save_pools(pools, self.pools_path)

  def load_pools(self) -> "labeling.Pools":
    """The hub's labelling pools (see `labeling`)."""
    if not self.pools_path.exists():
      raise HubError(f"The hub {self.directory} has no labelling pools yet; build them with "
                     "`python -m mll_jax.hub --hub_dir=... pools --data=animal_mnist`.")
    return labeling.load_pools(self.pools_path)

  def add_label(self, ref: str, label: dict) -> None:
    """Stores the model label of an entry registered without one (labels are computed once)."""
    ref = self.resolve(ref)
    if self.label_record(ref) is not None or not self._commit_label(ref, _label_bytes(label)):
      raise HubError(f"{ref} is labelled already; labels are computed once.")
    self.index()

  # ----- remove -----

  def remove(self, ref: str) -> str:
    """Deletes one version (`name@v`), or the latest one for a bare name. Returns the ref. The
    removal record is the commit; the files go after it."""
    ref = self.resolve(ref)
    name, version = parse_ref(ref)
    entry = self._entry(ref) if objects.read(str(self.manifest_path(ref))) else None
    stamp = json.dumps({"removed": datetime.datetime.now(datetime.timezone.utc).isoformat()})
    if not objects.create_if_absent(self.layout.record("removed", name, version),
                                    stamp.encode()):
      raise HubError(f"{ref} was removed by another process meanwhile.")
    label = self.label_record(ref) or {}
    for blob in (getattr(entry, "blob", ""), label.get("blob", "")):
      if hub_layout.BLOB_ID.fullmatch(str(blob)):
        objects.remove_tree(self.layout.blob(blob))
    self.index()
    return ref


def _checkpointer(path) -> ocp.Checkpointer:
  """orbax's PyTree checkpointer, committing by a file where a bucket has no rename (S3)."""
  orbax_s3.enable()
  return ocp.Checkpointer(ocp.PyTreeCheckpointHandler(),
                          temporary_path_class=orbax_s3.temporary_path_class(path))


def restore_variables(folder, architecture: dict):
  """The variables an entry's `variables/` folder holds, as numpy arrays of the shapes the
  architecture needs (orbax: no pickle)."""
  abstract = functional.abstract_variables(architecture)
  restore_args = _as_numpy(ocp.checkpoint_utils.construct_restore_args(abstract))
  return ocp.PyTreeCheckpointer().restore(
      folder, args=ocp.args.PyTreeRestore(item=abstract, restore_args=restore_args))


def _as_numpy(restore_args):
  import jax
  return jax.tree.map(lambda a: ocp.RestoreArgs(restore_type=np.ndarray), restore_args,
                      is_leaf=lambda x: isinstance(x, ocp.RestoreArgs))


def _check_variables(architecture: dict, variables, name: str) -> None:
  """The variables must have exactly the architecture's shapes (else load would fail later)."""
  import jax
  expected = functional.abstract_variables(architecture)
  got = jax.tree.map(lambda x: tuple(np.shape(x)), variables)
  want = jax.tree.map(lambda x: tuple(x.shape), expected)
  if got != want:
    flat_got = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_flatten_with_path(got)[0]}
    flat_want = {jax.tree_util.keystr(k): v
                 for k, v in jax.tree_util.tree_flatten_with_path(want)[0]}
    diffs = [f"{k}: {flat_got.get(k)} vs {flat_want.get(k)}"
             for k in sorted(set(flat_got) | set(flat_want)) if flat_got.get(k) != flat_want.get(k)]
    raise HubError(f"{name}: the variables do not fit the architecture ({'; '.join(diffs[:5])}"
                   f"{' ...' if len(diffs) > 5 else ''}). Register the params the model was "
                   "trained with, and its own architecture.")


def _label_arrays(label: dict) -> dict:
  """The label as plain arrays; object arrays (which would need pickle) are refused."""
  arrays = {k: np.asarray(v) for k, v in label.items()}
  if any(a.dtype == object for a in arrays.values()):
    raise HubError("A model label must hold plain numeric or string arrays (no objects).")
  return arrays


def _label_bytes(label: dict) -> bytes:
  """The label as `.npz` bytes (plain arrays only)."""
  arrays = _label_arrays(label)
  buffer = io.BytesIO()
  np.savez(buffer, **arrays)
  return buffer.getvalue()
