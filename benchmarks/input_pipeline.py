"""Input pipeline images/s against train step images/s, for the same config in the same run.

    python -m benchmarks.input_pipeline [--config=configs/mae.py] [--repeats=5] [--steps=20]

The pipeline is the trainer's own (`pipeline.train_dataset` + `train_iterator`: grain, shuffle,
random resized crop, flip, batching, read-ahead threads) on the config's data set; the step is
the trainer's jitted step on the config's mesh over all local devices, fed batches already in
memory. The two are timed apart, so each has the whole machine: a ratio pipeline / step well
above 1 means the input keeps up with training even when they share the cores.
Each figure is the median over `repeats` windows of `steps` batches after a warm-up.
"""

import statistics
import time

import jax
from absl import app, flags
from ml_collections import config_flags


if __name__ == "__main__":  # the process the trainer runs in (mll_jax/command.py)
  from mll_jax import command
  command.start()

from benchmarks import report  # noqa: E402
from mll_jax import optim, sharding, steps, tasks  # noqa: E402
from mll_jax.data import pipeline, sources, transforms  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", "configs/mae.py", "Config to benchmark.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed windows (median).")
_STEPS = flags.DEFINE_integer("steps", 20, "Batches per timed window.")


def _median_rate(next_batch, batch_size, repeats, per_window) -> float:
  for _ in range(3):  # warm-up: compilation, read-ahead threads filling
    next_batch()
  rates = []
  for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(per_window):
      next_batch()
    rates.append(per_window * batch_size / (time.perf_counter() - start))
  return statistics.median(rates)


def main(argv):
  del argv
  config = _CONFIG.value
  builder = sources.get_builder(config.data.name, config.data.data_dir or None,
                                config.data.manual_dir or None)
  info = sources.info(builder)
  source = sources.data_source(builder, config.data.train_split)
  dataset = pipeline.train_dataset(
      source, local_batch_size=config.batch_size, seed=0,
      transform=transforms.train_transform(config.data))
  iterator = pipeline.train_iterator(dataset, worker_threads=config.data.worker_threads)
  batches = [next(iterator) for _ in range(4)]
  pipeline_rate = _median_rate(lambda: next(iterator), config.batch_size, _REPEATS.value,
                               _STEPS.value)

  mesh = sharding.make_mesh(config.mesh)
  tx = optim.make(config.optim, config.batch_size, 1000, 10)
  compiled = steps.build(tasks.get(config.task), config, info, tx, mesh)
  state = [compiled.init()]
  count = iter(range(10**9))

  def train_step():
    batch = sharding.global_batch(batches[next(count) % len(batches)], compiled.batch_sharding)
    state[0], metrics = compiled.train_step(state[0], batch)
    jax.block_until_ready(metrics["loss"])

  step_rate = _median_rate(train_step, config.batch_size, _REPEATS.value, _STEPS.value)
  setup = (f"{config.task} {config.model.variant} on {info.name}, batch {config.batch_size}, "
           f"{config.data.worker_threads} read threads, {mesh.size} {jax.default_backend()} "
           f"device(s); median of {_REPEATS.value} windows of {_STEPS.value} batches")
  print(f"Input pipeline vs train step: {setup}")
  print(f"  input pipeline  {pipeline_rate:10.0f} images/s")
  print(f"  train step      {step_rate:10.0f} images/s")
  print(f"  ratio pipeline / step: {pipeline_rate / step_rate:.2f}x")
  report.emit("Input pipeline vs train step", setup,
              {"input pipeline": (pipeline_rate, "images/s"),
               "train step": (step_rate, "images/s")},
              {"pipeline / step": pipeline_rate / step_rate})


if __name__ == "__main__":
  app.run(main)
