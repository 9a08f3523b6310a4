"""Small whole-object operations that coordination needs and epath does not offer: create an
object only if it is absent, and read or list without a client-side cache.

epath (through gcsfs / s3fs) has no conditional write, and fsspec caches directory listings per
process, so a lease or a hub manifest written by another machine could go unseen. These calls
go to the storage service each time:

- local disk: a complete temporary file hard-linked to its name (`link` fails if the name
  exists, and a reader never sees a partial file);
- S3: `PutObject` with `If-None-Match: *`;
- GCS: an upload with `ifGenerationMatch=0`.

Endpoints and credentials are the services' usual variables (`AWS_ENDPOINT_URL`,
`STORAGE_EMULATOR_HOST`, ...), read by botocore and google-cloud-storage.
"""

import functools
import logging
import os
import shutil
import time
import uuid

from mll_jax.storage import locations

log = logging.getLogger(__name__)


class StorageError(RuntimeError):
  """Object storage refused or failed a request; the message says which and what to do."""


@functools.cache
def _s3():
  # botocore (s3fs's own dependency, through aiobotocore) rather than boto3: boto3 pins
  # botocore to its own release, which conflicts with aiobotocore's pin.
  import botocore.session  # pylint: disable=import-outside-toplevel
  return botocore.session.get_session().create_client("s3")


@functools.cache
def _gcs():
  from google.cloud import storage  # pylint: disable=import-outside-toplevel
  return storage.Client()


def _gcs_blob(path):
  _, bucket, key = locations.bucket_and_key(path)
  return _gcs().bucket(bucket).blob(key)


def _s3_code(error) -> str:
  """botocore's error code ("NoSuchKey", "PreconditionFailed", ...), "" for other errors."""
  response = getattr(error, "response", None)
  return response.get("Error", {}).get("Code", "") if isinstance(response, dict) else ""


def create_if_absent(path, data: bytes) -> bool:
  """Writes `data` to `path` unless something is there already; True if this call created it.

  Exactly one of several concurrent callers wins, on local disk and on S3 and GCS. A retry
  after a transient error that finds the object compares it with `data`: the first attempt
  may have created it before its answer was lost."""
  text = os.fspath(path)
  if text.startswith("s3://"):
    _, bucket, key = locations.bucket_and_key(text)

    def attempt(number):
      try:
        _s3().put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
      except Exception as e:  # botocore's ClientError
        if _s3_code(e) in ("PreconditionFailed", "ConditionalRequestConflict", "412"):
          return number > 0 and read(text) == data
        raise
      return True
    return _retried("create", text, attempt)
  if text.startswith("gs://"):
    from google.api_core import exceptions  # pylint: disable=import-outside-toplevel

    def attempt(number):
      try:
        _gcs_blob(text).upload_from_string(data, if_generation_match=0)
      except exceptions.PreconditionFailed:
        return number > 0 and read(text) == data
      return True
    return _retried("create", text, attempt)
  os.makedirs(os.path.dirname(text), exist_ok=True)
  temporary = f"{text}.{uuid.uuid4().hex}.partial"
  with open(temporary, "wb") as f:
    f.write(data)
    f.flush()
    os.fsync(f.fileno())
  try:
    os.link(temporary, text)
  except FileExistsError:
    return False
  finally:
    os.unlink(temporary)
  return True


def read(path) -> bytes | None:
  """The object's bytes, or None if there is none."""
  text = os.fspath(path)
  if not locations.is_remote(text):
    try:
      with open(text, "rb") as f:
        return f.read()
    except FileNotFoundError:
      return None

  def attempt(_):
    try:
      if text.startswith("s3://"):
        _, bucket, key = locations.bucket_and_key(text)
        return _s3().get_object(Bucket=bucket, Key=key)["Body"].read()
      return _gcs_blob(text).download_as_bytes()
    except Exception as e:
      # S3 tells a missing bucket (NoSuchBucket, an error) from a missing key; a GCS download
      # does not, and a missing GCS bucket is found by the first listing (`names`).
      if _s3_code(e) in ("NoSuchKey", "404") or type(e).__name__ == "NotFound":
        return None
      raise
  return _retried("read", text, attempt)


def write(path, data: bytes) -> None:
  """Replaces the object whole (a local file through a renamed temporary)."""
  text = os.fspath(path)
  if text.startswith("s3://"):
    _, bucket, key = locations.bucket_and_key(text)
    _retried("write", text, lambda _: _s3().put_object(Bucket=bucket, Key=key, Body=data))
    return
  if text.startswith("gs://"):
    _retried("write", text, lambda _: _gcs_blob(text).upload_from_string(data))
    return
  os.makedirs(os.path.dirname(text), exist_ok=True)
  temporary = f"{text}.{uuid.uuid4().hex}.partial"
  with open(temporary, "wb") as f:
    f.write(data)
  os.replace(temporary, text)


def append(path, data: bytes) -> None:
  """Appends to a file; an object is rewritten whole (objects cannot be appended to), which
  suits the short, single-writer logs (metrics.jsonl) it is used for."""
  text = os.fspath(path)
  if locations.is_remote(text):
    write(text, (read(text) or b"") + data)
    return
  with open(text, "ab") as f:
    f.write(data)


RETRIES = 4  # after the first attempt; waits of 0.5, 1, 2 and 4 s
_TRANSIENT = {"EndpointConnectionError", "ConnectionClosedError", "ReadTimeoutError",
              "ConnectTimeoutError", "ConnectionError", "ServiceUnavailable",
              "InternalServerError", "TooManyRequests", "GatewayTimeout", "BadGateway",
              "ReadTimeout", "ConnectTimeout", "Timeout"}


def _transient(error: BaseException) -> bool:
  """A failure worth retrying: the service or the network, not the request."""
  if type(error).__name__ in _TRANSIENT:
    return True
  response = getattr(error, "response", None)
  status = (response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if isinstance(response, dict) else getattr(error, "code", 0))
  return isinstance(status, int) and (status >= 500 or status == 429)


def _retried(action: str, text: str, attempt):
  """`attempt(number)`, retried with backoff on transient errors; each retry is logged. Other
  errors, and the last transient one, become a StorageError naming the problem."""
  for number in range(RETRIES + 1):
    try:
      return attempt(number)
    except Exception as e:  # noqa: BLE001 - classified below
      if number == RETRIES or not _transient(e):
        raise _storage_error(action, text, e) from e
      delay = 0.5 * 2 ** number
      message = (f"WARNING: storage: could not {action} {text} ({describe(e)}); retry "
                 f"{number + 1} of {RETRIES} in {delay:.1f} s")
      log.warning(message)
      print(message, flush=True)
      time.sleep(delay)
  raise AssertionError("unreachable")


def names(folder) -> list[str]:
  """The names directly under `folder` (objects and sub-folders), sorted; [] if none."""
  text = os.fspath(folder).rstrip("/")
  if not locations.is_remote(text):
    return sorted(os.listdir(text)) if os.path.isdir(text) else []
  return _retried("list", text, lambda _: _remote_names(text))


def _remote_names(text: str) -> list[str]:
  _, bucket, key = locations.bucket_and_key(text)
  if text.startswith("s3://"):
    found = set()
    for page in _s3().get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=key + "/", Delimiter="/"):
      found.update(o["Key"].rsplit("/", 1)[-1] for o in page.get("Contents", []))
      found.update(p["Prefix"].rstrip("/").rsplit("/", 1)[-1]
                   for p in page.get("CommonPrefixes", []))
    return sorted(found)
  listing = _gcs().list_blobs(bucket, prefix=key + "/", delimiter="/")
  found = {blob.name.rsplit("/", 1)[-1] for blob in listing}
  found.update(p.rstrip("/").rsplit("/", 1)[-1] for p in listing.prefixes)
  return sorted(found)


def walk(folder) -> list[str]:
  """Every object (file) under `folder`, as sorted paths relative to it; [] if none. Local
  symbolic links are listed, not followed."""
  text = os.fspath(folder).rstrip("/")
  if locations.is_remote(text):
    return _retried("list", text, lambda _: _remote_keys(text))
  found = []
  for root, folders, files in os.walk(text):
    found += [os.path.relpath(os.path.join(root, n), text) for n in files]
    found += [os.path.relpath(os.path.join(root, n), text) for n in folders
              if os.path.islink(os.path.join(root, n))]
  return sorted(found)


def _remote_keys(text: str) -> list[str]:
  _, bucket, key = locations.bucket_and_key(text)
  if text.startswith("s3://"):
    keys = [o["Key"] for page in _s3().get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=key + "/") for o in page.get("Contents", [])]
  else:
    keys = [b.name for b in _gcs().list_blobs(bucket, prefix=key + "/")]
  return sorted(k[len(key) + 1:] for k in keys)


def remove_tree(folder) -> None:
  """Deletes `folder` and everything under it; nothing if it is absent."""
  text = os.fspath(folder).rstrip("/")
  if not locations.is_remote(text):
    if os.path.islink(text):
      os.unlink(text)
    else:
      shutil.rmtree(text, ignore_errors=True)
    return
  _, bucket, key = locations.bucket_and_key(text)
  for name in walk(text):
    if text.startswith("s3://"):
      _retried("delete", f"{text}/{name}",
               lambda _, name=name: _s3().delete_object(Bucket=bucket, Key=f"{key}/{name}"))
    else:
      _retried("delete", f"{text}/{name}", lambda _, name=name: _delete_gcs(f"{text}/{name}"))


def move_tree(source, destination) -> None:
  """Moves a folder: a rename on local disk; on a bucket, which has no rename, a copy of every
  object followed by the source's removal (so an interruption leaves both, never neither)."""
  source, destination = os.fspath(source).rstrip("/"), os.fspath(destination).rstrip("/")
  if not locations.is_remote(source):
    shutil.move(source, destination)
    return
  for name in walk(source):
    write(f"{destination}/{name}", read(f"{source}/{name}"))
  remove_tree(source)
  _forget_listings(source)
  _forget_listings(destination)


def _forget_listings(text: str) -> None:
  """Drops fsspec's cached listings of a changed prefix, which epath (and through it orbax)
  would otherwise go on reading in this process."""
  import fsspec  # pylint: disable=import-outside-toplevel
  fsspec.filesystem(text.split("://", 1)[0]).invalidate_cache()


def _delete_gcs(text: str) -> None:
  from google.api_core import exceptions  # pylint: disable=import-outside-toplevel
  try:
    _gcs_blob(text).delete()
  except exceptions.NotFound:  # deleted meanwhile (a retry, or another remover)
    pass


def _storage_error(action: str, path: str, error: Exception) -> StorageError:
  return StorageError(f"Could not {action} {path}: {describe(error)}")


def describe(error: BaseException) -> str:
  """One line naming what went wrong with a bucket request and how to fix it."""
  text = f"{type(error).__name__}: {str(error).splitlines()[0][:200] if str(error) else ''}"
  code = _s3_code(error) or type(error).__name__
  if code in ("NoSuchBucket", "NotFound") or "NoSuchBucket" in text or "bucket does not exist" in text.lower():
    return f"{text}. The bucket does not exist: create it, or fix the bucket name."
  if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "Forbidden",
              "Unauthorized", "DefaultCredentialsError", "RefreshError", "NoCredentialsError"):
    return (f"{text}. The credentials are missing or refused: log in (gcloud auth "
            "application-default login; aws configure) or set the service account / access "
            "keys, and check they may write to this bucket.")
  if "connect" in text.lower() or code in ("EndpointConnectionError", "ConnectionError"):
    return f"{text}. The storage service cannot be reached: check the network or endpoint."
  return text
