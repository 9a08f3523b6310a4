"""Train-step images/s of the default MAE config in mll_jax vs the same model in PyTorch.

    python benchmarks/mae_step.py [--config=configs/mae.py] [--repeats=5] [--steps=20]

Both run in this process on the same machine, one after the other, on the same random uint8
batches; each figure is the median over `repeats` timed windows of `steps` steps after a
warm-up (compilation excluded). Also reported: CPU seconds per wall second (how many cores
each framework keeps busy). Prints both and the ratio mll_jax / PyTorch.
"""

import os
import statistics
import sys
import time

import jax
import numpy as np
from absl import app, flags
from ml_collections import config_flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import report  # noqa: E402
from mll_jax import aot, optim, sharding, steps, tasks  # noqa: E402
from mll_jax.data import sources  # noqa: E402
from mll_jax.models import mae as mae_model, vit  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", "configs/mae.py", "Config to benchmark.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed windows per framework.")
_STEPS = flags.DEFINE_integer("steps", 20, "Steps per timed window.")
_TORCH_THREADS = flags.DEFINE_integer("torch_threads", 0, "torch threads (0: torch's default).")
_ONLY_JAX = flags.DEFINE_bool("only_jax", False, "Skip the PyTorch baseline (for profiling).")


def _time_windows(step, batches, repeats, steps_per_window, sync):
  """Median images/s and median CPU-s per wall-s over `repeats` windows."""
  for b in batches[:3]:  # warm-up (and compilation)
    sync(step(b))
  rates, busy = [], []
  for _ in range(repeats):
    cpu0, t0 = time.process_time(), time.perf_counter()
    out = None
    for i in range(steps_per_window):
      out = step(batches[i % len(batches)])
    sync(out)
    wall = time.perf_counter() - t0
    rates.append(steps_per_window * len(batches[0]) / wall)
    busy.append((time.process_time() - cpu0) / wall)
  return statistics.median(rates), statistics.median(busy)


def bench_jax(config, batches):
  mesh = sharding.make_mesh((("data", 1), ("fsdp", 1)), jax.devices()[:1])
  info = sources.DatasetInfo("bench", tuple(str(i) for i in range(10)),
                             batches[0].shape[1:], {})
  tx = optim.make(config.optim, config.batch_size, 1000, 10)
  compiled = steps.build(tasks.get(config.task), config, info, tx, mesh)
  flops = aot.compile_train_step(compiled, config, mesh).flops_per_device  # one device here
  state = [compiled.init()]

  def step(images):
    batch = sharding.global_batch({"image": images}, compiled.batch_sharding)
    state[0], metrics = compiled.train_step(state[0], batch)
    return metrics["loss"]

  return (*_time_windows(step, batches, _REPEATS.value, _STEPS.value, jax.block_until_ready),
          flops)


def bench_torch(config, batches):
  import torch
  from benchmarks import torch_mae
  if _TORCH_THREADS.value:
    torch.set_num_threads(_TORCH_THREADS.value)
  m = config.model
  model = torch_mae.TorchMAE(vit.encoder_size(m.variant), mae_model.DECODER_SIZES[m.decoder],
                             config.data.image_size, config.data.channels, m.patch_size,
                             m.mask_ratio)
  step = torch_mae.train_step_fn(model)
  return _time_windows(step, batches, _REPEATS.value, _STEPS.value, lambda x: x)


def main(argv):
  del argv
  config = _CONFIG.value
  shape = (config.batch_size, config.data.image_size, config.data.image_size,
           config.data.channels)
  rng = np.random.default_rng(0)
  batches = [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(4)]
  import torch
  print(f"machine: {os.cpu_count()} CPUs, jax {jax.__version__} ({jax.default_backend()}), "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads)")
  print(f"model: MAE {config.model.variant} patch {config.model.patch_size}, decoder "
        f"{config.model.decoder}, batch {shape}")
  jax_rate, jax_busy, flops = bench_jax(config, batches)
  achieved = flops * jax_rate / config.batch_size  # FLOP/s: XLA's FLOPs per step x steps/s
  device = jax.devices()[0]
  peak = peak_flops(device.device_kind) if device.platform != "cpu" else None
  print(f"mll_jax  train step: {jax_rate:8.1f} images/s (median of {_REPEATS.value}), "
        f"{jax_busy:.2f} CPU-s per wall-s, {achieved / 1e9:.1f} GFLOP/s"
        + (f", MFU {achieved / peak:.1%} of {device.device_kind}'s {peak / 1e12:.0f} TFLOP/s"
           if peak else ""))
  figures = {"mll_jax": (jax_rate, "images/s"), "mll_jax FLOP/s": (achieved, "FLOP/s")}
  ratios = {"MFU": achieved / peak} if peak else {}
  if not _ONLY_JAX.value:
    torch_rate, torch_busy = bench_torch(config, batches)
    print(f"PyTorch  train step: {torch_rate:8.1f} images/s (median of {_REPEATS.value}), "
          f"{torch_busy:.2f} CPU-s per wall-s")
    print(f"ratio mll_jax / PyTorch: {jax_rate / torch_rate:.2f}x")
    figures["PyTorch"] = (torch_rate, "images/s")
    ratios["mll_jax / PyTorch"] = jax_rate / torch_rate
  report.emit("MAE train step", f"MAE {config.model.variant} patch {config.model.patch_size}, "
              f"decoder {config.model.decoder}, batch {shape}, 1 {device.platform} device "
              f"({device.device_kind}); median of {_REPEATS.value} windows of {_STEPS.value} "
              "steps", figures, ratios)


# Dense bf16 peak FLOP/s per chip from the vendors' data sheets (MFU's denominator). The ViT
# step computes in float32 unless configured otherwise, so MFU against this peak is a floor.
PEAK_BF16_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L4": 121e12,
                   "TPU v4": 275e12, "TPU v5 lite": 197e12, "TPU v5e": 197e12,
                   "TPU v5p": 459e12, "TPU v6 lite": 918e12, "TPU v6e": 918e12}


def peak_flops(device_kind: str) -> float | None:
  """The device's peak from PEAK_BF16_FLOPS by name (e.g. 'NVIDIA H200' -> H200), if known."""
  for name, peak in PEAK_BF16_FLOPS.items():
    if name.lower() in device_kind.lower():
      return peak
  return None


if __name__ == "__main__":
  app.run(main)
