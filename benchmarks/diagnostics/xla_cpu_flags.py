"""Train-step images/s of one config under XLA CPU compiler options (`XLA_FLAGS`) and under
other memory allocators, each against the defaults measured in the same run: which options, if
any, the CPU runs should set.

    python -m benchmarks.diagnostics.xla_cpu_flags [--config=configs/finetune.py:mini] [--repeats=5]

XLA reads its flags once, when the backend starts, and an allocator is chosen when the process
starts (`LD_PRELOAD`, `GLIBC_TUNABLES`), so every option set runs in its own worker process
(this script with `--worker`). The workers build and warm their step first (compilation
excluded); then the timed windows alternate, one window of every worker per round, while the
others wait on their pipe, so background load lands on all sides alike. Each figure is the
median over rounds; each ratio is against the `default` worker of the same run (or the
`--baseline` one). Also printed: CPU seconds per wall second, the share of them spent in the
kernel, minor page faults per step (memory handed back to the OS and faulted in again), and
each option set's first loss, which must match the baseline's (an option that changes the
numbers is reported as such, not hidden in a speed-up). An allocator library this machine
lacks is skipped and named. Two option sets split the step's batch over two CPU devices of the
worker (`JAX_NUM_CPU_DEVICES=2`, the mesh the trainer's `--cpu_devices=2` makes);
`--baseline=tcmalloc` puts the ratios against the trainer's own allocator instead of glibc's.
"""

import json
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np
from absl import app, flags
from ml_collections import config_flags


from benchmarks import report  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", "configs/finetune.py:mini",
                                          "Config whose train step is timed.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Rounds: timed windows per option set.")
_STEPS = flags.DEFINE_integer("steps", 20, "Train steps per timed window.")
_ONLY = flags.DEFINE_list("only", None, "Option sets to run (default: all of CANDIDATES).")
_BASELINE = flags.DEFINE_string("baseline", "default", "The option set the ratios are against.")
_WORKER = flags.DEFINE_bool("worker", False, "Internal: time windows on request (stdin).")

_LIBS = "/usr/lib/x86_64-linux-gnu"
# Removes dots from the fusion kinds XLA CPU hands to YNNPACK (its default dot library).
_NO_YNN_DOTS = "--xla_cpu_experimental_ynn_fusion_type=-individual_dot,-dot"
# Option sets tried against the defaults (jaxlib 0.10's CPU backend, glibc's malloc): name (for
# --only and the report) -> the environment variables a worker starts with. XLA_FLAGS are
# added to any the caller set. The allocators (Debian packages libtcmalloc-minimal4 and
# libjemalloc2) keep freed memory for reuse where glibc returns large blocks to the OS, which
# then faults every page in again on the next step; glibc's own tunables can keep it too.
CANDIDATES = {
    "default": {},
    "vec512": {"XLA_FLAGS": "--xla_cpu_prefer_vector_width=512"},
    "xnn_graph": {"XLA_FLAGS":
                  "--xla_cpu_experimental_xnn_graph_fusion_mode=XNN_GRAPH_FUSION_MODE_GREEDY"},
    "no_xnnpack": {"XLA_FLAGS": "--xla_cpu_use_xnnpack=false"},
    "onednn": {"XLA_FLAGS": "--xla_cpu_use_onednn=true"},
    "fast_runtime": {"XLA_FLAGS": "--xla_cpu_opt_preset=FAST_RUNTIME"},
    "fast_math": {"XLA_FLAGS": "--xla_cpu_enable_fast_math=true"},
    "tcmalloc": {"LD_PRELOAD": f"{_LIBS}/libtcmalloc_minimal.so.4"},
    "jemalloc": {"LD_PRELOAD": f"{_LIBS}/libjemalloc.so.2"},
    # glibc serves blocks above mmap_threshold (at most 32 MiB) by mmap and unmaps them when
    # freed; XLA's temporaries of one step can be one block larger than that.
    "glibc_keep": {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=4294967295:"
                                     "glibc.malloc.mmap_threshold=33554432"},
    "glibc_no_mmap": {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=4294967295:"
                                        "glibc.malloc.mmap_max=0"},
    # The step data-parallel over two CPU devices of one process (each a half batch; the same
    # program as over two chips), against one device whose ops each spread over both cores:
    # this step's ops are small (width 96, 50 tokens), so splitting the batch may cost less than
    # splitting each op (1.26x, xla_cpu_flags.md). Under tcmalloc, the trainer's allocator.
    "tcmalloc_2_devices": {"LD_PRELOAD": f"{_LIBS}/libtcmalloc_minimal.so.4",
                           "JAX_NUM_CPU_DEVICES": "2"},
    "2_devices": {"JAX_NUM_CPU_DEVICES": "2"},
    # On the trainer's allocator: 512-bit vectors; the dots taken from YNNPACK (XLA's own
    # Eigen dots); the dots handed to oneDNN fusions instead. Tried on the MAE float32 step for
    # issue 13's gap to PyTorch: 1.03x, 1.03x and 1.06x, within that run's noise
    # (xla_cpu_flags.md).
    "tcmalloc_vec512": {"LD_PRELOAD": f"{_LIBS}/libtcmalloc_minimal.so.4",
                        "XLA_FLAGS": "--xla_cpu_prefer_vector_width=512"},
    "tcmalloc_eigen_dots": {"LD_PRELOAD": f"{_LIBS}/libtcmalloc_minimal.so.4",
                            "XLA_FLAGS": _NO_YNN_DOTS},
    "tcmalloc_onednn_fusion": {"LD_PRELOAD": f"{_LIBS}/libtcmalloc_minimal.so.4",
                               "XLA_FLAGS": "--xla_cpu_experimental_onednn_fusion_type=dot "
                                            + _NO_YNN_DOTS},
}


def build_step(config):
  """`(train(images, labels) -> loss, sync)`: the config's jitted train step, data-parallel
  over the worker's CPU devices (one unless its option set makes more)."""
  import jax
  from mll_jax import optim, sharding, steps, tasks
  from mll_jax.data import sources
  mesh = sharding.make_mesh((("data", jax.device_count()), ("fsdp", 1)), jax.devices())
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
    usage0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    out = None
    for i in range(steps_per_window):
      out = train(*batches[i % len(batches)])
    sync(out)
    wall = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    user, system = usage.ru_utime - usage0.ru_utime, usage.ru_stime - usage0.ru_stime
    print(json.dumps({"rate": steps_per_window * config.batch_size / wall,
                      "busy": (user + system) / wall,
                      "kernel": system / max(user + system, 1e-9),
                      "faults": (usage.ru_minflt - usage0.ru_minflt) / steps_per_window}),
          flush=True)


def missing_library(options: dict) -> str | None:
  """The preloaded library of an option set that this machine lacks, if any."""
  library = options.get("LD_PRELOAD")
  return library if library and not os.path.exists(library) else None


def _start(name: str, options: dict) -> subprocess.Popen:
  # An allocator preloaded into this process (by hand, or by mll_jax's entry points) is not
  # the default: each worker gets only its option set's preload.
  inherited = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
  env = {**inherited, **options, "JAX_PLATFORMS": "cpu",
         "XLA_FLAGS": " ".join(filter(None, [os.environ.get("XLA_FLAGS", ""),
                                             options.get("XLA_FLAGS", "")]))}
  args = [a for a in sys.argv[1:] if not a.startswith(("--only", "--report_json"))]
  return subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker", *args],
                          env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def _reply(proc: subprocess.Popen, name: str) -> dict:
  line = proc.stdout.readline()
  if not line:
    raise RuntimeError(f"The {name!r} worker ended without answering (options "
                       f"{CANDIDATES[name]!r}: one this jaxlib lacks?); its error is above.")
  return json.loads(line)


def main(argv):
  del argv
  config = _CONFIG.value
  if _WORKER.value:
    worker(config)
    return
  names = _ONLY.value or list(CANDIDATES)
  unknown = [n for n in names if n not in CANDIDATES]
  baseline = _BASELINE.value
  if unknown or baseline not in names:
    raise app.UsageError(f"--only: unknown {unknown} or no {baseline!r} (the --baseline); "
                         f"known: {', '.join(CANDIDATES)}.")
  skipped = {n: missing_library(CANDIDATES[n]) for n in names if missing_library(CANDIDATES[n])}
  for name, library in skipped.items():
    print(f"{name}: skipped, {library} is not installed")
  names = [n for n in names if n not in skipped]
  started = time.time()
  measured = {n: {"rate": [], "busy": [], "kernel": [], "faults": []} for n in names}
  first_loss, workers = {}, {}
  for name in names:  # one at a time: compiling in parallel would slow every compile
    workers[name] = _start(name, CANDIDATES[name])
    first_loss[name] = _reply(workers[name], name)["first_loss"]
  for _ in range(_REPEATS.value):
    for name, proc in workers.items():
      proc.stdin.write(f"{_STEPS.value}\n")
      proc.stdin.flush()
      for key, value in _reply(proc, name).items():
        measured[name][key].append(value)
  for proc in workers.values():
    proc.stdin.close()
    proc.wait()
  median = {n: {k: statistics.median(v) for k, v in m.items()} for n, m in measured.items()}
  base = median[baseline]["rate"]
  figures, ratios = {}, {}
  print(f"{config.task} {config.model.variant}, batch {config.batch_size}, "
        f"{_REPEATS.value} alternating rounds of {_STEPS.value} steps")
  for name in names:
    rate = median[name]["rate"]
    same = np.isclose(first_loss[name], first_loss[baseline], rtol=1e-4)
    print(f"{name:18s} {rate:8.1f} images/s, {median[name]['busy']:.2f} CPU-s per wall-s "
          f"({median[name]['kernel']:.0%} in the kernel), {median[name]['faults']:,.0f} page "
          f"faults per step, {rate / base:.2f}x {baseline}, first loss {first_loss[name]:.5f}"
          + ("" if same else f" (differs from {baseline}'s)"))
    figures[f"{name} train step"] = (rate, "images/s")
    figures[f"{name} page faults per step"] = (median[name]["faults"], "faults")
    figures[f"{name} kernel share of CPU time"] = (100 * median[name]["kernel"], "%")
    if name != baseline:
      ratios[f"{name} / {baseline}"] = rate / base
  report.emit("XLA CPU options and allocators (train step)",
              f"{config.task} {config.model.variant}, batch {config.batch_size};"
              f" {_REPEATS.value} alternating rounds of one {_STEPS.value}-step window per "
              f"option set, one worker process each, medians; "
              f"{time.time() - started:.0f} s in all", figures, ratios)


if __name__ == "__main__":
  app.run(main)
