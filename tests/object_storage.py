"""Object-storage servers for tests: `gcp-storage-emulator` (GCS JSON API) and moto (S3), each
on a free local port, with the variables that point tensorstore, gcsfs, s3fs, botocore and
google-cloud-storage at them. Nothing leaves the machine."""

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request

GCS_BUCKET = "bucket-one"
S3_BUCKET = "bucket-two"


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _wait_until_serving(url: str, proc, timeout: float = 30.0) -> None:
  deadline = time.time() + timeout
  while time.time() < deadline:
    if proc.poll() is not None:
      raise RuntimeError(f"the storage server for {url} exited with code {proc.returncode}")
    try:
      urllib.request.urlopen(url, timeout=1)
      return
    except urllib.error.HTTPError:
      return  # it answers
    except OSError:
      time.sleep(0.1)
  raise RuntimeError(f"no storage server answered at {url} within {timeout:.0f} s")


def start_gcs(port: int):
  """The GCS emulator (in memory, with GCS's preconditions: `gcs_emulator.py`), with
  `GCS_BUCKET` created."""
  proc = subprocess.Popen(
      [sys.executable, os.path.join(os.path.dirname(__file__), "gcs_emulator.py"), str(port),
       GCS_BUCKET], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  _wait_until_serving(f"http://127.0.0.1:{port}/storage/v1/b", proc)
  return proc


def start_s3(port: int):
  """moto's S3 server, with `S3_BUCKET` created."""
  proc = subprocess.Popen(
      [os.path.join(os.path.dirname(sys.executable), "moto_server"), "-p", str(port)],
      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  _wait_until_serving(f"http://127.0.0.1:{port}/", proc)
  urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/{S3_BUCKET}",
                                                method="PUT"))
  return proc


def environment(gcs_port: int, s3_port: int, folder: str) -> dict:
  """The variables that send every client to the local servers."""
  credentials = os.path.join(folder, "aws_credentials")
  with open(credentials, "w") as f:  # a profile file: the AWS libraries look for one
    f.write("[default]\naws_access_key_id = testing\naws_secret_access_key = testing\n")
  return {
      "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{gcs_port}",
      "TENSORSTORE_GCS_HTTP_URL": f"http://127.0.0.1:{gcs_port}",
      "GOOGLE_CLOUD_PROJECT": "test",
      "AWS_ENDPOINT_URL": f"http://127.0.0.1:{s3_port}",
      "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
      "AWS_DEFAULT_REGION": "us-east-1",
      "AWS_SHARED_CREDENTIALS_FILE": credentials, "AWS_CONFIG_FILE": credentials,
  }


@contextlib.contextmanager
def servers(folder: str):
  """Both servers for the `with` block; yields the environment that reaches them."""
  gcs_port, s3_port = free_port(), free_port()
  procs = []
  try:
    procs.append(start_gcs(gcs_port))
    procs.append(start_s3(s3_port))
    yield environment(gcs_port, s3_port, folder)
  finally:
    for proc in procs:
      proc.kill()
      proc.wait()
