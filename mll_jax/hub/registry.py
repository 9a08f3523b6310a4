"""The model hub on disk: a directory of functional, immutable, checksummed entries.

    <hub>/index.json                 {"format": ..., "entries": {"name@1": {summary}, ...}}
    <hub>/entries/<name>@<v>/entry.json   architecture, classes + SDAG nodes, cost, checksums
    <hub>/entries/<name>@<v>/variables/   params (+ model state), an orbax checkpoint
    <hub>/labels/<name>@<v>.npz           its model label (response tensor), once labelled
    <hub>/pools.npz                       the labelling pools (see labeling.py)
    <hub>/.lock, <hub>/.staging/

Safe by construction:

- An entry is written in `.staging/`, then renamed into `entries/` under the hub's lock: the
  rename is the commit point, so a crash leaves a staging folder (removed later), never a half
  entry. The index is rewritten atomically under the same lock; an entry committed by a process
  that died before updating the index is added back on the next locked operation.
- Names are validated before anything is written; nothing is unpickled (orbax for arrays, JSON
  for metadata, `np.load(allow_pickle=False)` for labels).
- Every file's SHA-256 is in `entry.json`, whose own hash is in the index, as is each label's:
  `verify` and `load` report any mismatch instead of loading.
- Entries never change, and a version number is never reused after a removal. A label is
  written once (at registration or by `label` later), to its own file, renamed into place under
  the lock before the index records it.
"""

import contextlib
import dataclasses
import datetime
import fcntl
import hashlib
import json
import os
import pathlib
import re
import shutil
import socket
import uuid

import numpy as np
import orbax.checkpoint as ocp

from mll_jax.hub import functional, labeling

FORMAT = "mll_jax.hub/1"
ENTRY_FILE = "entry.json"
VARIABLES_DIR = "variables"
MAX_NAME_LENGTH = 100
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
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
  if not _NAME.fullmatch(name) or ".." in name:
    raise HubError(f"Invalid model name {name!r}: use letters, digits, '.', '_' and '-', start "
                   "with a letter or digit, no '..' (versions are added as name@N).")
  return name


@dataclasses.dataclass(frozen=True)
class Entry:
  """What `entry.json` holds (see the module docstring)."""
  name: str
  version: int
  architecture: dict
  classes: tuple[str, ...]
  nodes: tuple[str, ...]      # SDAG node id of each class ("" where it has none)
  flops_per_image: float
  parameters: int
  files: dict                 # relative path -> sha256
  created: str
  source: str = ""

  @property
  def ref(self) -> str:
    return f"{self.name}@{self.version}"

  def to_json(self) -> dict:
    data = dataclasses.asdict(self)
    data.update(classes=list(self.classes), nodes=list(self.nodes))
    return data

  def summary(self) -> dict:
    return {"classes": len(self.classes), "nodes": len([n for n in self.nodes if n]),
            "flops_per_image": self.flops_per_image, "parameters": self.parameters}


def _sha256(path: pathlib.Path) -> str:
  digest = hashlib.sha256()
  with path.open("rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def _file_hashes(folder: pathlib.Path) -> tuple[dict, list[str]]:
  """`({relative path: sha256} of the regular files, [relative paths of symbolic links])`.

  Links are listed, never followed: a link in an entry could point anywhere on the machine
  that verifies or loads it."""
  hashes, links = {}, []
  for path in sorted(folder.rglob("*")):  # rglob does not descend into linked folders
    relative = str(path.relative_to(folder))
    if path.is_symlink():
      links.append(relative)
    elif path.is_file() and path.name != ENTRY_FILE:
      hashes[relative] = _sha256(path)
  return hashes, links


def _leaves_the_entry(relative: str) -> bool:
  """Whether a path listed in an entry would resolve outside the entry's folder."""
  path = pathlib.PurePosixPath(relative)
  return path.is_absolute() or ".." in path.parts or relative.startswith("~") or \
      "\\" in relative


def _write_json_atomically(path: pathlib.Path, data) -> None:
  staging = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp"
  with staging.open("w") as f:
    json.dump(data, f, indent=1, sort_keys=True)
    f.flush()
    os.fsync(f.fileno())
  os.replace(staging, path)


def parse_ref(ref: str) -> tuple[str, int | None]:
  """`"name@3"` -> ("name", 3); `"name"` -> ("name", None) (the latest version)."""
  match = _REF.fullmatch(ref or "")
  if not match:
    raise HubError(f"Invalid model reference {ref!r}: use NAME or NAME@VERSION.")
  version = match.group("version")
  return validate_name(match.group("name")), int(version) if version else None


class Hub:
  """A hub directory. Every method is safe to call from several processes at once."""

  def __init__(self, directory: str | os.PathLike, create: bool = True):
    self.directory = pathlib.Path(directory).expanduser().absolute()
    if self.directory.exists() and not self.directory.is_dir():
      raise HubError(f"Hub path {str(self.directory)!r} is a file; give a directory.")
    if not self.directory.exists():
      if not create:
        raise HubError(f"No hub at {str(self.directory)!r}; register a model to create one.")
      self.directory.mkdir(parents=True)
    for sub in ("entries", "labels", ".staging"):
      (self.directory / sub).mkdir(exist_ok=True)

  # ----- locking, index, recovery -----

  @contextlib.contextmanager
  def _locked(self):
    with (self.directory / ".lock").open("a") as lock:
      fcntl.flock(lock, fcntl.LOCK_EX)
      try:
        index = self._read_index()
        if self._recover(index):
          self._write_index(index)
        yield index
      finally:
        fcntl.flock(lock, fcntl.LOCK_UN)

  def _read_index(self) -> dict:
    path = self.directory / "index.json"
    if not path.exists():
      return {"format": FORMAT, "entries": {}}
    try:
      index = json.loads(path.read_text())
    except json.JSONDecodeError as e:
      raise HubError(f"The hub index {path} is not valid JSON ({e}); it is only ever replaced "
                     "atomically, so it was edited by hand: restore it, or delete it to rebuild "
                     "it from the entries.") from None
    if index.get("format") != FORMAT:
      raise HubError(f"{path} is not an mll_jax hub index (format {index.get('format')!r}).")
    return index

  def _write_index(self, index: dict) -> None:
    _write_json_atomically(self.directory / "index.json", index)

  def _recover(self, index: dict) -> bool:
    """Under the lock: index committed entries the index lacks; drop staging folders of dead
    processes. Returns whether the index changed."""
    changed = False
    for ref in [r for r in index["entries"] if not (self.directory / "entries" / r).exists()]:
      del index["entries"][ref]  # removed (the folder's rename commits a removal)
      changed = True
    for folder in (self.directory / "entries").iterdir():
      if folder.name not in index["entries"] and (folder / ENTRY_FILE).exists():
        index["entries"][folder.name] = self._index_record(folder)
        changed = True
    for label in (self.directory / "labels").glob("*.npz"):
      record = index["entries"].get(label.stem)
      if record is None:  # the label of an entry removed, or never indexed: not trusted
        label.unlink()
      elif "label_sha256" not in record:  # written just before a crash, or index rebuilt
        record["label_sha256"] = _sha256(label)
        changed = True
    host = socket.gethostname()
    for folder in (self.directory / ".staging").iterdir():
      parts = folder.name.split("__")
      if len(parts) == 3 and parts[0] == host and not _alive(int(parts[1])):
        shutil.rmtree(folder, ignore_errors=True)
    for stale in self.directory.glob(".index.json.*.tmp"):
      if not _alive(int(stale.name.split(".")[3])):
        stale.unlink(missing_ok=True)
    return changed

  def _index_record(self, folder: pathlib.Path) -> dict:
    entry = self._read_entry(folder)
    size = sum(p.lstat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())
    return {**entry.summary(), "entry_sha256": _sha256(folder / ENTRY_FILE), "size_bytes": size}

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
    label = _label_arrays(label) if label is not None else None
    staging = self.directory / ".staging" / \
        f"{socket.gethostname()}__{os.getpid()}__{uuid.uuid4().hex}"
    try:
      ocp.PyTreeCheckpointer().save(staging / VARIABLES_DIR, variables)
      files, _ = _file_hashes(staging)  # orbax writes regular files only
      flops = functional.flops_per_image(architecture)
      with self._locked() as index:
        # Versions are never reused, even after a removal: `name@2` always means one model.
        issued = index.setdefault("last_version", {})
        version = 1 + max([issued.get(name, 0)] +
                          [v for n, v in map(parse_ref, index["entries"]) if n == name])
        issued[name] = version
        entry = Entry(name, version, architecture, classes, nodes, flops,
                      functional.parameter_count(variables), files,
                      datetime.datetime.now(datetime.timezone.utc).isoformat(), source)
        _write_json_atomically(staging / ENTRY_FILE, entry.to_json())
        final = self.directory / "entries" / entry.ref
        os.rename(staging, final)  # the commit point
        index["entries"][entry.ref] = self._index_record(final)
        if label is not None:
          self._write_label(index, entry.ref, label)
        self._write_index(index)
      return entry
    finally:
      shutil.rmtree(staging, ignore_errors=True)

  # ----- read -----

  def _read_entry(self, folder: pathlib.Path) -> Entry:
    data = json.loads((folder / ENTRY_FILE).read_text())
    data["classes"], data["nodes"] = tuple(data["classes"]), tuple(data["nodes"])
    return Entry(**data)

  def resolve(self, ref: str) -> str:
    """`name` -> `name@<latest>`; `name@v` checked to exist."""
    name, version = parse_ref(ref)
    index = self._read_index()
    versions = sorted(v for n, v in map(parse_ref, index["entries"]) if n == name)
    if not versions:
      raise HubError(f"No model {name!r} in the hub {self.directory}; `list` shows what it "
                     "has.")
    if version is None:
      return f"{name}@{versions[-1]}"
    if version not in versions:
      raise HubError(f"No version {version} of {name!r}; it has "
                     f"{', '.join(str(v) for v in versions)}.")
    return f"{name}@{version}"

  def entries(self) -> list[Entry]:
    """Every entry, sorted by name and version."""
    index = self._read_index()
    refs = sorted(index["entries"], key=parse_ref)
    return [self._read_entry(self.directory / "entries" / ref) for ref in refs]

  def index(self) -> dict:
    """The index's records: ref -> summary (classes, nodes, FLOPs, size, ...)."""
    return self._read_index()["entries"]

  def show(self, ref: str) -> Entry:
    """The entry `ref` (`name` for the latest version, or `name@v`)."""
    return self._read_entry(self.directory / "entries" / self.resolve(ref))

  def verify(self, ref: str | None = None) -> dict[str, list[str]]:
    """Checksum problems per entry (all entries, or `ref`); empty lists mean intact."""
    index = self._read_index()
    refs = [self.resolve(ref)] if ref else sorted(index["entries"], key=parse_ref)
    return {r: self._problems(r, index["entries"][r]) for r in refs}

  def _problems(self, ref: str, record: dict) -> list[str]:
    folder = self.directory / "entries" / ref
    if not (folder / ENTRY_FILE).exists():
      return [f"{ENTRY_FILE} is missing"]
    problems = []
    if _sha256(folder / ENTRY_FILE) != record.get("entry_sha256"):
      problems.append(f"{ENTRY_FILE} was modified")
    expected = dict(self._read_entry(folder).files)
    actual, links = _file_hashes(folder)
    outside = sorted(p for p in expected if _leaves_the_entry(p))
    problems += [f"{p} points outside the entry (not read)" for p in outside]
    problems += [f"{p} is a symbolic link (not followed: an entry holds regular files only)"
                 for p in links]
    for p in outside:
      del expected[p]
    problems += [f"{p} is missing" for p in sorted(set(expected) - set(actual))]
    problems += [f"{p} is not part of the entry" for p in sorted(set(actual) - set(expected))]
    problems += [f"{p} does not match its checksum" for p in sorted(expected)
                 if p in actual and actual[p] != expected[p]]
    label = self._label_path(ref)
    if "label_sha256" in record and (not label.exists() or
                                     _sha256(label) != record["label_sha256"]):
      problems.append(f"its label {label.relative_to(self.directory)} is missing or modified")
    return problems

  def load(self, ref: str):
    """`(apply_fn, variables)` of an intact entry; `apply_fn(variables, images) -> logits`.
    Raises CorruptEntry (naming the files) if any checksum does not match."""
    ref = self.resolve(ref)
    problems = self.verify(ref)[ref]
    if problems:
      raise CorruptEntry(f"Hub entry {ref} is corrupted: {'; '.join(problems)}. It was not "
                         f"loaded; remove it (`remove {ref}`) and register the model again.")
    entry = self.show(ref)
    variables = restore_variables(self.directory / "entries" / ref / VARIABLES_DIR,
                                  entry.architecture)
    return functional.apply_fn(entry.architecture), variables

  def _label_path(self, ref: str) -> pathlib.Path:
    return self.directory / "labels" / f"{ref}.npz"

  def load_label(self, ref: str) -> dict | None:
    """The entry's model label arrays (see `labeling`), or None if it has none yet. Raises
    CorruptEntry if the label file does not match its checksum."""
    ref = self.resolve(ref)
    record = self._read_index()["entries"][ref]
    if "label_sha256" not in record:
      return None
    path = self._label_path(ref)
    if not path.exists() or _sha256(path) != record["label_sha256"]:
      raise CorruptEntry(f"The label of {ref} is missing or modified; remove the entry and "
                         "register the model again.")
    with np.load(path, allow_pickle=False) as data:
      return {k: data[k] for k in data.files}

  # ----- pools and labels -----

  @property
  def pools_path(self) -> pathlib.Path:
    return self.directory / labeling.POOLS_FILE

  def set_pools(self, pools: "labeling.Pools") -> None:
    """Installs the hub's labelling pools. Refused once entries are labelled on other pools:
    their labels would no longer describe the same images."""
    with self._locked() as index:
      current = self.load_pools() if self.pools_path.exists() else None
      if current is not None and current.fingerprint != pools.fingerprint and any(
          "label_sha256" in record for record in index["entries"].values()):
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
    with self._locked() as index:
      ref = self.resolve(ref)
      if "label_sha256" in index["entries"][ref]:
        raise HubError(f"{ref} is labelled already; labels are computed once.")
      self._write_label(index, ref, label)
      self._write_index(index)

  def _write_label(self, index: dict, ref: str, label: dict) -> None:
    """Under the lock: the label file renamed into place, then its checksum in `index`."""
    path = self._label_path(ref)
    staging = path.parent / f".{path.name}.{os.getpid()}.tmp.npz"
    _save_label(staging, label)
    os.replace(staging, path)
    index["entries"][ref]["label_sha256"] = _sha256(path)

  # ----- remove -----

  def remove(self, ref: str) -> str:
    """Deletes one version (`name@v`), or the latest one for a bare name. Returns the ref."""
    with self._locked() as index:
      ref = self.resolve(ref)
      trash = self.directory / ".staging" / \
          f"{socket.gethostname()}__{os.getpid()}__removed-{uuid.uuid4().hex}"
      os.rename(self.directory / "entries" / ref, trash)
      self._label_path(ref).unlink(missing_ok=True)
      del index["entries"][ref]
      self._write_index(index)
    shutil.rmtree(trash, ignore_errors=True)
    return ref


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def restore_variables(folder: pathlib.Path, architecture: dict):
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


def _save_label(path: pathlib.Path, label: dict) -> None:
  np.savez(path, **_label_arrays(label))
