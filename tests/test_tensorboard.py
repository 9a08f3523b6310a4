"""TensorBoard event files beside metrics.jsonl: every logged scalar, at its step, readable
without TensorFlow (the records are parsed here with tensorboardX's own protobufs)."""

import json
import struct

import pytest
from tensorboardX.proto import event_pb2

from mll_jax import run_log, train


def _scalars(folder) -> dict:
  """`{tag: {step: value}}` from every event file in `folder` (TFRecord framing: length,
  its CRC, the serialised Event, its CRC)."""
  found = {}
  for path in sorted(folder.glob("events.out.tfevents.*")):
    data = path.read_bytes()
    offset = 0
    while offset < len(data):
      (length,) = struct.unpack("<Q", data[offset:offset + 8])
      event = event_pb2.Event.FromString(data[offset + 12:offset + 12 + length])
      offset += 12 + length + 4
      for value in event.summary.value:
        found.setdefault(value.tag, {})[event.step] = value.simple_value
  return found


@pytest.mark.slow
def test_every_logged_scalar_is_in_the_event_files(make_config, tmp_path):
  workdir = tmp_path / "run"
  train.run(make_config(total_steps=4), workdir)
  logged = {}
  for line in (workdir / "metrics.jsonl").read_text().splitlines():
    record = json.loads(line)
    for key, value in record.items():
      if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
        logged.setdefault(key, {})[record["step"]] = value
  scalars = _scalars(workdir / run_log.TENSORBOARD_DIR)
  for tag in ("loss", "learning_rate", "images_per_sec", "reconstruction/loss"):
    assert tag in scalars, sorted(scalars)
  assert scalars.keys() == logged.keys()
  for tag, by_step in logged.items():
    assert scalars[tag].keys() == by_step.keys(), tag
    for step, value in by_step.items():
      assert abs(scalars[tag][step] - value) <= 1e-6 * max(1.0, abs(value)), (tag, step)


def test_a_resumed_run_logs_each_step_once(tmp_path):
  # What a killed attempt logged after the checkpoint it is resumed from is logged again by
  # the new attempt, so it is dropped; a fresh start (no checkpoint) drops everything.
  path = tmp_path / "metrics.jsonl"
  lines = [{"step": 0, "validation/accuracy": 0.1}, {"step": 50, "loss": 1.0},
           {"step": 100, "validation/accuracy": 0.5}, {"step": 150, "loss": 0.5}]
  path.write_text("".join(json.dumps(line) + "\n" for line in lines))
  run_log.drop_lines_to_be_relogged(path, start_step=100)
  assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [0, 50, 100]
  run_log.drop_lines_to_be_relogged(path, start_step=0)
  assert path.read_text() == "" and not path.with_name("metrics.jsonl.tmp").exists()


def test_a_curve_holds_one_point_per_step_whatever_the_file(tmp_path):
  from experiments import curves
  path = tmp_path / "metrics.jsonl"
  lines = [{"step": 0, "validation/accuracy": 0.1}, {"step": 0, "validation/accuracy": 0.1},
           {"step": 10, "loss": 2.0}, {"step": 20, "validation/accuracy": 0.7}]
  path.write_text("".join(json.dumps(line) + "\n" for line in lines))
  assert curves.read(tmp_path) == [(0, 0.1), (20, 0.7)]
