"""Checkpoint speed on local disk and in buckets: the save and restore time of a train state
(default the ViT-S/16 MAE) through `mll_jax.checkpoint.Checkpointer`, on local disk, on the GCS
emulator and on moto's S3 (both local servers, started here), and the train step's time with an
asynchronous save in flight against none, in alternating windows.

    python -m benchmarks.checkpoint_io [--config=configs/mae.py:vit_s16,imagenet2012] [--repeats=3]

The servers are Python processes on this machine: their times show the protocol's overhead and
the emulators' own speed, not a real bucket's bandwidth.
"""

if __name__ == "__main__":  # the process is set up (allocator, libtpu) before JAX loads
  from mll_jax import command
  command.start()

import os  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402

import grain  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402
import orbax.checkpoint as ocp  # noqa: E402
from absl import app, flags  # noqa: E402
from absl import logging as absl_logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from benchmarks import report  # noqa: E402
from mll_jax import checkpoint, optim, sharding, steps, tasks  # noqa: E402
from mll_jax.data import sources  # noqa: E402
from tests import object_storage  # noqa: E402  (the test suite's local GCS and S3 servers)

_CONFIG = config_flags.DEFINE_config_file(
    "config", "configs/mae.py:vit_s16,imagenet2012", "Model config (its data set is not read).")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Saves and restores per place; step windows.")
_STEPS = flags.DEFINE_integer("steps", 4, "Train steps per window.")


def build(config):
  """`(compiled steps, initial state, batches)` of `config` on one device."""
  shape = (config.batch_size, config.data.image_size, config.data.image_size,
           config.data.channels)
  rng = np.random.default_rng(0)
  batches = [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(2)]
  mesh = sharding.make_mesh((("data", 1), ("fsdp", 1)), jax.devices()[:1])
  info = sources.DatasetInfo("bench", tuple(str(i) for i in range(10)), shape[1:], {})
  tx = optim.make(config.optim, config.batch_size, 1000, 10)
  compiled = steps.build(tasks.get(config.task), config, info, tx, mesh)
  return compiled, compiled.init(), batches


def save_and_restore(place: str, compiled, state, repeats: int) -> tuple[list, list]:
  """Seconds per save (until committed) and per restore, `repeats` of each."""
  ckpt = checkpoint.Checkpointer(place, every_steps=1, keep=2)
  data = iter(grain.MapDataset.range(100).to_iter_dataset())
  saves, restores = [], []
  for step in range(1, repeats + 1):
    start = time.perf_counter()
    ckpt.save(step, state, data, {})
    ckpt.wait()
    saves.append(time.perf_counter() - start)
    start = time.perf_counter()
    restored = ckpt.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(compiled.abstract_state)))
    jax.block_until_ready(restored["state"])
    restores.append(time.perf_counter() - start)
  ckpt.close()
  return saves, restores


def step_times_with_a_save_in_flight(place: str, compiled, state, batches, repeats: int,
                                     steps_per_window: int) -> tuple[list, list]:
  """Seconds per train step in windows without a save and windows that start one, alternating."""
  ckpt = checkpoint.Checkpointer(place, every_steps=1, keep=1)
  data = iter(grain.MapDataset.range(100).to_iter_dataset())

  def window(state):
    start = time.perf_counter()
    for i in range(steps_per_window):
      batch = sharding.global_batch({"image": batches[i % len(batches)]},
                                    compiled.batch_sharding)
      state, metrics = compiled.train_step(state, batch)
    jax.block_until_ready(metrics)
    return state, (time.perf_counter() - start) / steps_per_window

  state, _ = window(state)  # compiled and warm
  quiet, saving = [], []
  for round_index in range(repeats):
    state, seconds = window(state)
    quiet.append(seconds)
    ckpt.save(round_index + 1, state, data, {})  # returns once the arrays are off the device
    state, seconds = window(state)
    saving.append(seconds)
    ckpt.wait()
  ckpt.close()
  return quiet, saving


def main(argv):
  del argv
  absl_logging.set_verbosity(absl_logging.WARNING)  # orbax logs every save at INFO
  config = _CONFIG.value
  compiled, state, batches = build(config)
  megabytes = sum(x.nbytes for x in jax.tree.leaves(state)) / 2**20
  setup = (f"MAE {config.model.variant} train state ({megabytes:,.0f} MiB), batch "
           f"{config.batch_size}, {os.cpu_count()} CPUs, {_REPEATS.value} repeats")
  print(setup)
  figures, ratios, medians = {}, {}, {}
  with tempfile.TemporaryDirectory() as local, object_storage.servers(local) as env:
    os.environ.update(env)
    run = uuid.uuid4().hex
    places = {"local disk": f"{local}/run", "GCS emulator": f"gs://bucket-one/{run}",
              "S3 (moto)": f"s3://bucket-two/{run}"}
    for name, place in places.items():
      saves, restores = save_and_restore(place, compiled, state, _REPEATS.value)
      medians[name] = (statistics.median(saves), statistics.median(restores))
      print(f"{name:13s} save {medians[name][0]:7.2f} s  restore {medians[name][1]:7.2f} s  "
            f"(medians of {_REPEATS.value}; {megabytes / medians[name][0]:,.0f} MiB/s saved)")
      figures[f"save {name}"] = (medians[name][0], "s")
      figures[f"restore {name}"] = (medians[name][1], "s")
      if name != "local disk":
        ratios[f"save {name} / local"] = medians[name][0] / medians["local disk"][0]
        ratios[f"restore {name} / local"] = medians[name][1] / medians["local disk"][1]
    for name in ("local disk", "GCS emulator"):
      quiet, saving = step_times_with_a_save_in_flight(
          places[name] + "-steps", compiled, compiled.init(), batches, _REPEATS.value,
          _STEPS.value)  # a fresh state: the train step donates its input
      ratio = statistics.median(saving) / statistics.median(quiet)
      print(f"{name:13s} train step {statistics.median(quiet) * 1e3:8.1f} ms without a save, "
            f"{statistics.median(saving) * 1e3:8.1f} ms with one in flight: {ratio:.2f}x "
            "(target <= 1.1x)")
      figures[f"step without a save ({name})"] = (statistics.median(quiet) * 1e3, "ms")
      figures[f"step with a save in flight ({name})"] = (statistics.median(saving) * 1e3, "ms")
      ratios[f"step with a save in flight / without ({name})"] = ratio
  report.emit("Checkpoint save and restore, local and in buckets", setup, figures, ratios)


if __name__ == "__main__":
  app.run(main)
