"""Which files a prepared offline data set was built from, so that a changed source is never
served from a stale cache.

TFDS keys a prepared data set by name and version only: after `idx/mnist` was prepared from
one folder of IDX files, asking for `idx/mnist` with another folder returned the first one's
images. Preparing now records the source (each file's name, size and SHA-256) next to the
prepared data; a later request with a `manual_dir` whose files differ is refused, naming the
folder it was built from and how to rebuild.
"""

import functools
import hashlib
import json
import pathlib

RECORD_FILE = "mll_jax_source.json"


def fingerprint(files: list[pathlib.Path]) -> dict:
  """`{name: {"size", "sha256"}}` of the source files (content hashes: a copy of the same
  files elsewhere matches, an edited file in the same place does not)."""
  out = {}
  for path in sorted(files):
    stat = path.stat()
    out[path.name] = {"size": stat.st_size,
                      "sha256": _sha256(str(path.absolute()), stat.st_size, stat.st_mtime_ns)}
  return out


@functools.lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
  # Keyed by size and mtime too: one run asks several times, a changed file is hashed anew.
  del size, mtime_ns
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def write(prepared_dir: str | pathlib.Path, folder: pathlib.Path, files: dict) -> None:
  """Records the source `folder` and its files' `fingerprint` beside the prepared data."""
  path = pathlib.Path(prepared_dir) / RECORD_FILE
  path.write_text(json.dumps({"folder": str(folder.absolute()), "files": files}, indent=1))


def read(prepared_dir: str | pathlib.Path) -> dict | None:
  """The recorded source, or None for data prepared before sources were recorded."""
  path = pathlib.Path(prepared_dir) / RECORD_FILE
  return json.loads(path.read_text()) if path.exists() else None
