"""Teaches orbax 0.12 to write its arrays to `s3://`, which tensorstore supports and orbax does
not yet: its kvstore spec builder knows `gs://` and local files only (google/orbax#359, with an
open upstream PR, #2739). Remove this module once an orbax release builds `s3` specs itself.

Three private functions are wrapped, each falling through to orbax's own for every other path:
path normalisation (which collapses `s3://` to `s3:/`), the "remote driver" test, and the spec
of the base kvstore, which becomes tensorstore's `s3` driver. Endpoint, region and credentials
come from the usual AWS variables (`AWS_ENDPOINT_URL`, `AWS_DEFAULT_REGION`, ...), which
tensorstore, botocore and s3fs all read. Checkpoints on S3 are committed with orbax's commit-file
protocol, as on GCS (`temporary_path_class`), since S3 has no atomic rename.
"""

import os
import re

from orbax.checkpoint._src.path import gcs_utils
from orbax.checkpoint._src.serialization import tensorstore_utils
from orbax.checkpoint.path import atomicity

_S3 = re.compile(r"^s3:/+")
_enabled = False


def enable() -> None:
  """Installs the wrappers (once per process)."""
  global _enabled
  if _enabled:
    return
  normalize = tensorstore_utils._normalize_path  # pylint: disable=protected-access
  remote_driver = tensorstore_utils._use_gcs_driver  # pylint: disable=protected-access
  gcs_spec = gcs_utils.get_kvstore_for_gcs

  def normalize_path(path: str) -> str:
    return _S3.sub("s3://", normalize(path))

  def use_remote_driver(directory: str) -> bool:
    return directory.startswith("s3://") or remote_driver(directory)

  def kvstore_spec(path: str) -> dict:
    if not path.startswith("s3://"):
      return gcs_spec(path)
    bucket, _, key = path.removeprefix("s3://").partition("/")
    spec = {"driver": "s3", "bucket": bucket, "path": key}
    # tensorstore's s3 driver does not read these two itself (measured: without `endpoint` it
    # never reaches an S3-compatible server named by AWS_ENDPOINT_URL).
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if endpoint:
      spec["endpoint"] = endpoint
    if region:
      spec["aws_region"] = region
    return spec

  tensorstore_utils._normalize_path = normalize_path  # pylint: disable=protected-access
  tensorstore_utils._use_gcs_driver = use_remote_driver  # pylint: disable=protected-access
  gcs_utils.get_kvstore_for_gcs = kvstore_spec
  _enabled = True


def temporary_path_class(directory) -> type | None:
  """The commit protocol for a checkpoint directory: a commit file on S3, orbax's default
  (None) elsewhere."""
  return atomicity.CommitFileTemporaryPath if str(directory).startswith("s3://") else None
