"""One path type for local folders and buckets: `etils.epath`, what orbax and TFDS use.

A location is a local path (a `pathlib.Path`, expanded and made absolute, since orbax needs
absolute paths) or an object-storage URL (`gs://bucket/...`, `s3://bucket/...`) as an
`epath.Path`, which reaches the bucket through fsspec (gcsfs, s3fs). Both have the pathlib
methods the framework uses; local paths stay `pathlib.Path` so that local behaviour (recursive
globs included) is exactly as before. Where a bucket lacks a file system's guarantees (append,
rename, lock), `objects` and `lease` stand in.
"""

import os
import pathlib

from etils import epath

REMOTE_SCHEMES = ("gs://", "s3://")


def is_remote(path: str | os.PathLike) -> bool:
  """True for an object-storage URL (gs://, s3://)."""
  return os.fspath(path).startswith(REMOTE_SCHEMES)


def location(path: str | os.PathLike) -> "pathlib.Path | epath.Path":
  """`path` as a path object: a bucket URL as an epath.Path, a local path as a pathlib.Path,
  expanded and absolute."""
  text = os.fspath(path)
  if is_remote(text):
    bucket = text.split("://", 1)[1].split("/", 1)[0]
    if len(bucket) < 3:
      raise ValueError(f"{text!r}: bucket names have at least 3 characters; give "
                       f"{text.split('://')[0]}://BUCKET/path.")
    return epath.Path(text)
  if "://" in text:
    raise ValueError(f"{text!r}: only local paths, gs:// and s3:// are supported.")
  return pathlib.Path(os.path.abspath(os.path.expanduser(text)))


def bucket_and_key(path: str | os.PathLike) -> tuple[str, str, str]:
  """`(scheme, bucket, key)` of a bucket URL, e.g. `("s3", "runs", "mae/config.json")`."""
  scheme, rest = os.fspath(path).split("://", 1)
  bucket, _, key = rest.partition("/")
  return scheme, bucket, key.strip("/")

