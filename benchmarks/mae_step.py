"""Train-step and encoder-inference images/s of the default MAE config in mll_jax (float32,
bfloat16, and bfloat16 matmul operands on float32 activations) vs the same model in PyTorch (float32 eager, and bfloat16 CPU autocast).

    python -m benchmarks.mae_step [--config=configs/mae.py] [--repeats=5] [--steps=20]

Every variant runs in this process on the same random uint8 batches, so on one allocator:
tcmalloc where installed, as mll_jax's commands run (`MLL_JAX_ALLOCATOR=system` for glibc's;
benchmarks/run.py times both). After a warm-up of each
(compilation excluded), the timed windows alternate: one window of every variant per round,
`repeats` rounds, so background load lands on all sides alike; each figure is the median over
rounds; the ratios issue 13 sets targets for come with their lowest and highest round too.
Also reported: CPU seconds per wall second (how many cores each keeps busy), and the
bfloat16 / float32 ratio of mll_jax that picks the CPU default of `config.model.dtype`.
"""

import os
import statistics
import time

import jax
import numpy as np
from absl import app, flags
from ml_collections import config_flags


if __name__ == "__main__":  # the process the trainer runs in (mll_jax/command.py)
  from mll_jax import command
  command.start()

from benchmarks import report  # noqa: E402
from mll_jax import allocator, aot, optim, sharding, steps, tasks  # noqa: E402
from mll_jax.data import sources  # noqa: E402
from mll_jax.models import mae as mae_model, vit  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", "configs/mae.py", "Config to benchmark.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Rounds: timed windows per variant.")
_STEPS = flags.DEFINE_integer("steps", 20, "Steps per timed window.")
_TORCH_THREADS = flags.DEFINE_integer("torch_threads", 0, "torch threads (0: torch's default).")
_ONLY_JAX = flags.DEFINE_bool("only_jax", False, "Skip the PyTorch baselines (for profiling).")


class Variant:
  """One timed function: `run(batch)` returns something `sync` waits for."""

  def __init__(self, run, sync):
    self.run, self.sync = run, sync
    self.rates, self.busy = [], []

  def warm_up(self, batches):
    for b in batches[:3]:  # compilation, allocator and thread-pool warm-up
      self.sync(self.run(b))

  def window(self, batches, steps_per_window):
    cpu0, t0 = time.process_time(), time.perf_counter()
    out = None
    for i in range(steps_per_window):
      out = self.run(batches[i % len(batches)])
    self.sync(out)
    wall = time.perf_counter() - t0
    self.rates.append(steps_per_window * len(batches[0]) / wall)
    self.busy.append((time.process_time() - cpu0) / wall)

  @property
  def rate(self) -> float:
    return statistics.median(self.rates)


# (what, mll_jax dtype, PyTorch variant) of the ratios issue 13 sets targets for: float32
# train >= 1.0x, bfloat16 train >= 1.5x PyTorch float32 and >= 1.0x its autocast, inference
# >= 1.2x (bfloat16_matmul is the CPU's bfloat16 policy).
TARGET_RATIOS = (("train", "float32", "PyTorch float32"),
                 ("train", "bfloat16_matmul", "PyTorch float32"),
                 ("train", "bfloat16_matmul", "PyTorch bf16 autocast"),
                 ("inference", "bfloat16_matmul", "PyTorch float32"))


def round_ratios(variant: Variant, baseline: Variant) -> list[float]:
  """`variant`'s rate over `baseline`'s in each round of `alternate` (window i of each ran in
  round i)."""
  return [a / b for a, b in zip(variant.rates, baseline.rates)]


def random_batches(config) -> tuple[tuple[int, ...], list[np.ndarray]]:
  """The batch shape of `config` and four random uint8 batches of it (seed 0), which every
  variant of a comparison runs on."""
  shape = (config.batch_size, config.data.image_size, config.data.image_size,
           config.data.channels)
  rng = np.random.default_rng(0)
  return shape, [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(4)]


def comparison_setup(config, shape: tuple[int, ...]) -> str:
  """What a same-process comparison of two forms of this step ran on, and how it was timed
  (`--repeats` alternating rounds of `--steps`-step windows), for its report section."""
  return (f"MAE {config.model.variant} patch {config.model.patch_size}, decoder "
          f"{config.model.decoder}, batch {shape}, 1 {jax.devices()[0].platform} device; "
          f"{_REPEATS.value} alternating rounds of one {_STEPS.value}-step window per variant, "
          "medians")


def variants_with_each(config, batches, dtypes, module, attribute: str, forms: dict) -> dict:
  """Train and inference variants of the step for each of `dtypes` and each form in `forms`
  (name -> value of `module.attribute`, set while that step is built and traced, restored
  after): `{"train {dtype} {form}": Variant, "infer {dtype} {form}": Variant, ...}`."""
  variants, original = {}, getattr(module, attribute)
  try:
    for dtype in dtypes:
      for form, value in forms.items():
        setattr(module, attribute, value)
        train, infer, _ = jax_variants(config, batches, dtype)
        train.warm_up(batches)  # traces (and compiles) with this form in place
        infer.warm_up(batches)
        variants[f"train {dtype} {form}"], variants[f"infer {dtype} {form}"] = train, infer
  finally:
    setattr(module, attribute, original)
  return variants


def report_comparison(title: str, config, shape, variants: dict, ratio_names: dict,
                      form: str, baseline: str) -> None:
  """Prints every variant's images/s and, for each `prefix -> ratio name`, the rate of
  `"{prefix} {form}"` over `"{prefix} {baseline}"`; then emits the report section."""
  figures, ratios = {}, {}
  for name, v in variants.items():
    print(f"{name:36s} {v.rate:8.1f} images/s (median of {_REPEATS.value})")
    figures[name] = (v.rate, "images/s")
  for prefix, name in ratio_names.items():
    ratios[name] = variants[f"{prefix} {form}"].rate / variants[f"{prefix} {baseline}"].rate
    print(f"ratio {name}: {ratios[name]:.2f}x")
  report.emit(title, comparison_setup(config, shape), figures, ratios)


def alternate(variants: dict, batches, repeats: int, steps_per_window: int) -> None:
  """Warm every variant up, then time one window of each per round."""
  for v in variants.values():
    v.warm_up(batches)
  for _ in range(repeats):
    for v in variants.values():
      v.window(batches, steps_per_window)


def jax_variants(config, batches, dtype: str, with_hlo: bool = False):
  """`(train step, encoder forward, XLA's FLOPs per train step)` in `dtype`, and with
  `with_hlo` the train step's optimised HLO text too (what benchmarks/diagnostics/step_profile.py reads)."""
  config = config.copy_and_resolve_references()
  config.model.dtype = dtype
  mesh = sharding.make_mesh((("data", 1), ("fsdp", 1)), jax.devices()[:1])
  info = sources.DatasetInfo("bench", tuple(str(i) for i in range(10)),
                             batches[0].shape[1:], {})
  tx = optim.make(config.optim, config.batch_size, 1000, 10)
  task = tasks.get(config.task)
  compiled = steps.build(task, config, info, tx, mesh)
  flops = aot.compile_train_step(compiled, config, mesh).flops_per_device  # one device here
  state = [compiled.init()]

  def train(images):
    batch = sharding.global_batch({"image": images}, compiled.batch_sharding)
    state[0], metrics = compiled.train_step(state[0], batch)
    return metrics["loss"]

  features = jax.jit(lambda variables, images: compiled.apply(variables, task.features, images))
  # A copy: the train step donates the state's buffers.
  variables = jax.tree.map(lambda x: x.copy(), steps.variables(state[0]))
  encode = lambda images: features(variables, images)
  variants = (Variant(train, jax.block_until_ready), Variant(encode, jax.block_until_ready),
              flops)
  if not with_hlo:
    return variants
  lowered = compiled.train_step.lower(compiled.abstract_state,
                                      aot.batch_spec(config, compiled.batch_sharding))
  return (*variants, lowered.compile().as_text())


def torch_variants(config, bfloat16: bool) -> tuple[Variant, Variant]:
  import torch
  from benchmarks import torch_mae
  if _TORCH_THREADS.value:
    torch.set_num_threads(_TORCH_THREADS.value)
  m = config.model
  model = torch_mae.TorchMAE(vit.encoder_size(m.variant), mae_model.DECODER_SIZES[m.decoder],
                             config.data.image_size, config.data.channels, m.patch_size,
                             m.mask_ratio)
  return (Variant(torch_mae.train_step_fn(model, bfloat16=bfloat16), lambda x: x),
          Variant(torch_mae.encode_fn(model, bfloat16=bfloat16), lambda x: x))


def main(argv):
  del argv
  config = _CONFIG.value
  shape, batches = random_batches(config)
  import torch
  malloc = allocator.loaded_allocator()  # both sides share it: one process
  print(f"machine: {os.cpu_count()} CPUs, jax {jax.__version__} ({jax.default_backend()}), "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), allocator {malloc}")
  print(f"model: MAE {config.model.variant} patch {config.model.patch_size}, decoder "
        f"{config.model.decoder}, batch {shape}")
  train, infer, flops = {}, {}, {}
  for dtype in ("float32", "bfloat16", "bfloat16_matmul"):
    train[f"mll_jax {dtype}"], infer[f"mll_jax {dtype}"], flops[dtype] = jax_variants(
        config, batches, dtype)
  if not _ONLY_JAX.value:
    for name, bf16 in (("PyTorch float32", False), ("PyTorch bf16 autocast", True)):
      train[name], infer[name] = torch_variants(config, bf16)
  alternate({**{f"train {k}": v for k, v in train.items()},
             **{f"infer {k}": v for k, v in infer.items()}}, batches, _REPEATS.value,
            _STEPS.value)

  device = jax.devices()[0]
  peak = peak_flops(device.device_kind) if device.platform != "cpu" else None
  figures, ratios = {}, {}
  for what, table in (("train step", train), ("encoder inference", infer)):
    for name, v in table.items():
      line = (f"{name:24s} {what}: {v.rate:8.1f} images/s (median of {_REPEATS.value}), "
              f"{statistics.median(v.busy):.2f} CPU-s per wall-s")
      if what == "train step" and name.startswith("mll_jax"):
        achieved = flops[name.split()[1]] * v.rate / config.batch_size
        line += f", {achieved / 1e9:.1f} GFLOP/s"
        if peak:
          line += f", MFU {achieved / peak:.1%} of {device.device_kind}'s {peak / 1e12:.0f} TFLOP/s"
          ratios[f"MFU {name}"] = achieved / peak
      print(line)
      figures[f"{name} {what}"] = (v.rate, "images/s")
  rate = lambda table, name: table[name].rate if name in table else float("nan")
  for narrow in ("bfloat16", "bfloat16_matmul"):
    ratios[f"train {narrow} / float32 (mll_jax)"] = \
        rate(train, f"mll_jax {narrow}") / rate(train, "mll_jax float32")
  # (what, mll_jax dtype, PyTorch variant): the ratios issue 13 sets targets for, in the
  # report's order; bfloat16_matmul is float32 activations with bfloat16 matmul operands.
  against_torch = [("train", "float32", "PyTorch float32"),
                   ("train", "bfloat16", "PyTorch float32"),
                   ("train", "bfloat16", "PyTorch bf16 autocast"),
                   ("inference", "float32", "PyTorch float32"),
                   ("inference", "bfloat16", "PyTorch bf16 autocast"),
                   ("train", "bfloat16_matmul", "PyTorch float32"),
                   ("train", "bfloat16_matmul", "PyTorch bf16 autocast"),
                   ("inference", "bfloat16_matmul", "PyTorch float32"),
                   ("inference", "bfloat16_matmul", "PyTorch bf16 autocast")]
  if not _ONLY_JAX.value:
    for what, dtype, torch_name in against_torch:
      table = train if what == "train" else infer
      ratios[f"{what} mll_jax {dtype} / {torch_name}"] = \
          rate(table, f"mll_jax {dtype}") / rate(table, torch_name)
    # The spread behind the ratios issue 13 sets targets for: each round's own ratio (the two
    # windows of a round ran back to back), lowest and highest, so a reader sees whether a
    # ratio near its target is above it in every round or only in the median.
    for what, dtype, torch_name in TARGET_RATIOS:
      table = train if what == "train" else infer
      by_round = round_ratios(table[f"mll_jax {dtype}"], table[torch_name])
      name = f"{what} mll_jax {dtype} / {torch_name}"
      ratios[f"{name}, lowest round"], ratios[f"{name}, highest round"] = \
          min(by_round), max(by_round)
  for name, value in ratios.items():
    print(f"ratio {name}: {value:.2f}" + ("" if name.startswith("MFU") else "x"))
  report.emit(f"MAE train step and encoder inference, {malloc} allocator",
              f"MAE {config.model.variant} patch {config.model.patch_size}, decoder "
              f"{config.model.decoder}, batch {shape}, 1 {device.platform} device "
              f"({device.device_kind}), allocator {malloc}"
              f"{'' if _ONLY_JAX.value else ' (both sides)'}; "
              f"{_REPEATS.value} alternating rounds of one "
              f"{_STEPS.value}-step window per variant, medians", figures, ratios)


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
