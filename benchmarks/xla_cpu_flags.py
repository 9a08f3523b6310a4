"""Train-step images/s of one config under XLA CPU compiler options (`XLA_FLAGS`), each against
XLA's defaults measured in the same run: which options, if any, the CPU runs should set.

    python benchmarks/xla_cpu_flags.py [--config=configs/finetune.py:mini] [--repeats=5]

XLA reads its flags once, when the backend starts, so every option set runs in its own worker
process (this script with `--worker`). The workers build and warm their step first (compilation
excluded); then the timed windows alternate, one window of every worker per round, while the
others wait on their pipe, so background load lands on all sides alike. Each figure is the
median over rounds; each ratio is against the `default` worker of the same run. Also printed:
CPU seconds per wall second, and each option set's first loss, which must match the default's
(an option that changes the numbers is reported as such, not hidden in a speed-up).
"""

import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np
from absl import app, flags
from ml_collections import config_flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import report  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", "configs/finetune.py:mini",
                                          "Config whose train step is timed.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Rounds: timed windows per option set.")
_STEPS = flags.DEFINE_integer("steps", 20, "Train steps per timed window.")
_ONLY = flags.DEFINE_list("only", None, "Option sets to run (default: all of CANDIDATES).")
_WORKER = flags.DEFINE_bool("worker", False, "Internal: time windows on request (stdin).")

# Option sets tried against XLA's defaults (jaxlib 0.10's CPU backend): name (for --only and the
# report) -> what goes into XLA_FLAGS.
CANDIDATES = {
    "default": "",
    "vec512": "--xla_cpu_prefer_vector_width=512",
    "xnn_graph": "--xla_cpu_experimental_xnn_graph_fusion_mode=XNN_GRAPH_FUSION_MODE_GREEDY",
    "no_xnnpack": "--xla_cpu_use_xnnpack=false",
    "onednn": "--xla_cpu_use_onednn=true",
    "fast_runtime": "--xla_cpu_opt_preset=FAST_RUNTIME",
    "fast_math": "--xla_cpu_enable_fast_math=true",
}


def build_step(config):
  """`(train(images, labels) -> loss, sync)`: the config's jitted train step on one device."""
  import jax
  from mll_jax import optim, sharding, steps, tasks
  from mll_jax.data import sources
  mesh = sharding.make_mesh((("data", 1), ("fsdp", 1)), jax.devices()[:1])
  shape = (config.data.image_size, config.data.image_size, config.data.channels)
  info = sources.DatasetInfo("bench", tuple(str(i) for i in range(10)), shape, {})
  tx = optim.make(config.optim, config.batch_size, 1000, 10)
  compiled = steps.build(tasks.get(config.task), config, info, tx, mesh)
  state = [compiled.init()]

  def train(images, labels):
    batch = sharding.global_batch({"image": images, "label": labels}, compiled.batch_sharding)
    state[0], metrics = compiled.train_step(state[0], batch)
    return metrics["loss"]

  return train, jax.block_until_ready


def worker(config) -> None:
  """Builds and warms the step, prints the first loss, then times one window per request."""
  rng = np.random.default_rng(0)
  shape = (config.batch_size, config.data.image_size, config.data.image_size,
           config.data.channels)
  batches = [(rng.integers(0, 256, shape, dtype=np.uint8),
              rng.integers(0, 10, config.batch_size).astype(np.int32)) for _ in range(4)]
  train, sync = build_step(config)
  first_loss = float(sync(train(*batches[0])))
  for b in batches[1:3]:  # allocator and thread-pool warm-up
    sync(train(*b))
  print(json.dumps({"ready": True, "first_loss": first_loss}), flush=True)
  for line in sys.stdin:
    steps_per_window = int(line)
    cpu0, t0 = time.process_time(), time.perf_counter()
    out = None
    for i in range(steps_per_window):
      out = train(*batches[i % len(batches)])
    sync(out)
    wall = time.perf_counter() - t0
    print(json.dumps({"rate": steps_per_window * config.batch_size / wall,
                      "busy": (time.process_time() - cpu0) / wall}), flush=True)


def _start(name: str, xla_flags: str) -> subprocess.Popen:
  env = dict(os.environ, XLA_FLAGS=" ".join(filter(None, [os.environ.get("XLA_FLAGS", ""),
                                                           xla_flags])),
             JAX_PLATFORMS="cpu")
  args = [a for a in sys.argv[1:] if not a.startswith(("--only", "--report_json"))]
  return subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker", *args],
                          env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def _reply(proc: subprocess.Popen, name: str) -> dict:
  line = proc.stdout.readline()
  if not line:
    raise RuntimeError(f"The {name!r} worker ended without answering (XLA_FLAGS "
                       f"{CANDIDATES[name]!r}: an option this jaxlib lacks?); its error is "
                       "above.")
  return json.loads(line)


def main(argv):
  del argv
  config = _CONFIG.value
  if _WORKER.value:
    worker(config)
    return
  names = _ONLY.value or list(CANDIDATES)
  unknown = [n for n in names if n not in CANDIDATES]
  if unknown or "default" not in names:
    raise app.UsageError(f"--only: unknown {unknown} or no 'default'; known: "
                         f"{', '.join(CANDIDATES)}.")
  started = time.time()
  rates, busy, first_loss, workers = {n: [] for n in names}, {n: [] for n in names}, {}, {}
  for name in names:  # one at a time: compiling in parallel would slow every compile
    workers[name] = _start(name, CANDIDATES[name])
    first_loss[name] = _reply(workers[name], name)["first_loss"]
  for _ in range(_REPEATS.value):
    for name, proc in workers.items():
      proc.stdin.write(f"{_STEPS.value}\n")
      proc.stdin.flush()
      answer = _reply(proc, name)
      rates[name].append(answer["rate"])
      busy[name].append(answer["busy"])
  for proc in workers.values():
    proc.stdin.close()
    proc.wait()
  base = statistics.median(rates["default"])
  figures, ratios = {}, {}
  print(f"{config.task} {config.model.variant}, batch {config.batch_size}, "
        f"{_REPEATS.value} alternating rounds of {_STEPS.value} steps")
  for name in names:
    rate = statistics.median(rates[name])
    same = np.isclose(first_loss[name], first_loss["default"], rtol=1e-4)
    print(f"{name:13s} {rate:8.1f} images/s, {statistics.median(busy[name]):.2f} CPU-s per "
          f"wall-s, {rate / base:.2f}x default, first loss {first_loss[name]:.5f}"
          + ("" if same else " (differs from the default's)"))
    figures[f"{name} train step"] = (rate, "images/s")
    if name != "default":
      ratios[f"{name} / default"] = rate / base
  report.emit("XLA CPU options (train step)",
              f"{config.task} {config.model.variant}, batch {config.batch_size}, one CPU device;"
              f" {_REPEATS.value} alternating rounds of one {_STEPS.value}-step window per "
              f"option set, one worker process each, medians; "
              f"{time.time() - started:.0f} s in all", figures, ratios)


if __name__ == "__main__":
  app.run(main)
