"""`gcp-storage-emulator` with the two GCS behaviours it lacks and the framework relies on:
`python tests/gcs_emulator.py PORT BUCKET`.

- Generation preconditions. The emulator accepts any `ifGenerationMatch` (measured: a second
  create with `ifGenerationMatch=0` succeeds). Real GCS refuses with 412, and the hub's commit
  and the workdir lease rest on that refusal, so uploads and deletes here check it, under one
  lock so that two racing creates cannot both pass.
- Generation headers on downloads. tensorstore reads an object's generation from
  `x-goog-generation` and rereads OCDBT manifests with `ifGenerationNotMatch`; without them a
  checkpoint save fails now and then with "Malformed StorageGeneration".
- One thread per connection. The stock server answers one connection at a time, so a client
  that opens a pooled connection and sends nothing stalls every other process (measured: three
  registrars hung until their timeout).
The handlers are wrapped before the server module binds them into its routing table.
"""

import sys
import threading
from http import HTTPStatus, server

from gcp_storage_emulator.exceptions import NotFound
from gcp_storage_emulator.handlers import objects

_writes = threading.Lock()


def _current_generation(storage, bucket: str, name: str) -> str:
  try:
    return str(storage.get_file_obj(bucket, name).get("generation") or "0")
  except NotFound:
    return "0"


def _precondition_fails(request, storage, name: str) -> bool:
  wanted = request.query.get("ifGenerationMatch")
  if not wanted:
    return False
  return _current_generation(storage, request.params["bucket_name"], name) != wanted[0]


def _checked(handler, object_name):
  def wrapped(request, response, storage, *args, **kwargs):
    with _writes:
      name = object_name(request)
      if name is not None and _precondition_fails(request, storage, name):
        response.status = HTTPStatus.PRECONDITION_FAILED
        response.json({"error": {"code": 412, "message": "Precondition Failed"}})
        return None
      return handler(request, response, storage, *args, **kwargs)
  return wrapped


def _upload_name(request):
  if "name" in request.query:
    return request.query["name"][0]
  data = request.data
  return data.get("meta", {}).get("name") if isinstance(data, dict) else None


def _download_with_generation(handler):
  def wrapped(request, response, storage, *args, **kwargs):
    bucket, name = request.params["bucket_name"], request.params["object_id"]
    generation = _current_generation(storage, bucket, name)
    not_match = request.query.get("ifGenerationNotMatch")
    if generation != "0" and not_match and not_match[0] == generation:
      response.status = HTTPStatus.NOT_MODIFIED
      response["x-goog-generation"] = generation
      return None
    if generation != "0":
      response["x-goog-generation"] = generation
      response["x-goog-metageneration"] = "1"
    return handler(request, response, storage, *args, **kwargs)
  return wrapped


objects.insert = _checked(objects.insert, _upload_name)
objects.delete = _checked(objects.delete, lambda request: request.params["object_id"])
objects.download = _download_with_generation(objects.download)

from gcp_storage_emulator.server import create_server  # noqa: E402  (after the wrapping)

if __name__ == "__main__":
  server.ThreadingHTTPServer.daemon_threads = True
  server.HTTPServer = server.ThreadingHTTPServer  # read by the emulator when it starts serving
  port, bucket = int(sys.argv[1]), sys.argv[2]
  create_server("127.0.0.1", port, in_memory=True, default_bucket=bucket).run()
