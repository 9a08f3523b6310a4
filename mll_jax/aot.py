"""Ahead-of-time compilation of the train step: per-device memory and FLOPs without running.

`python -m mll_jax.train --config=... --compile_only` lowers the jitted, sharded train step on
abstract inputs (shapes, dtypes and shardings only, nothing allocated) and compiles it for the
configured mesh. XLA's own analyses of the compiled executable then give the figures: memory
from `memory_analysis()` and FLOPs from `cost_analysis()`, both for one device's SPMD program.
A pod configuration that does not fit fails here, on a laptop, instead of after the launch.
"""

import dataclasses
import time

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh

from mll_jax import tpu_pods
from mll_jax.data import transforms


@dataclasses.dataclass
class CompileReport:
  """What one compile of the train step says about a step on `devices` devices."""
  mesh: dict
  devices: int
  global_batch: int
  argument_bytes: int      # per device: state + batch shards
  output_bytes: int
  alias_bytes: int         # outputs written in place of donated arguments
  temp_bytes: int          # activations and scratch
  code_bytes: int
  flops_per_device: float  # one step, from XLA's cost analysis
  compile_seconds: float
  bytes_accessed_per_device: float = float("nan")  # HBM traffic, from the cost analysis
  platform: str = ""       # the devices compiled for: "cpu", or a pod slice like "v5p-128"
  chip: "tpu_pods.Chip | None" = None
  dtype: str = ""
  scanned: bool = False    # layers as one scanned loop: XLA's cost analysis counts it once

  def roofline(self) -> "tpu_pods.Roofline | None":
    """Step-time lower bounds on the target chip (TPU targets only)."""
    if self.chip is None:
      return None
    return tpu_pods.roofline(self.flops_per_device, self.bytes_accessed_per_device, self.chip)

  @property
  def peak_bytes_per_device(self) -> int:
    """Arguments + outputs + temporaries, less the outputs aliased to donated arguments."""
    return self.argument_bytes + self.output_bytes - self.alias_bytes + self.temp_bytes

  def text(self) -> str:
    gib = lambda b: f"{b / 2**30:.2f} GiB"
    lines = [
        f"Compiled the train step for mesh {self.mesh} ({self.devices} devices, "
        f"{self.platform or jax.default_backend()}) in {self.compile_seconds:.1f} s; global "
        f"batch {self.global_batch}" + (f"; compute dtype {self.dtype}." if self.dtype else "."),
        f"Per-device memory: {gib(self.peak_bytes_per_device)} "
        f"(arguments {gib(self.argument_bytes)}, outputs {gib(self.output_bytes)}, "
        f"aliased {gib(self.alias_bytes)}, temporaries {gib(self.temp_bytes)}, "
        f"code {self.code_bytes / 2**20:.1f} MiB)",
        f"FLOPs per step: {self.flops_per_device:.4g} per device, "
        f"{self.flops_per_device * self.devices:.4g} in all",
    ]
    bound = self.roofline()
    if bound is not None:
      hbm = self.chip.hbm_bytes
      fits = "fits" if self.peak_bytes_per_device <= hbm else "DOES NOT FIT"
      lines += [
          f"HBM per chip: {gib(self.peak_bytes_per_device)} of {gib(hbm)} "
          f"({self.peak_bytes_per_device / hbm:.0%}): {fits}.",
          f"Roofline step time: {bound.step_seconds * 1e3:.1f} ms (compute "
          f"{bound.compute_seconds * 1e3:.1f} ms at {self.chip.peak_bf16_flops / 1e12:.0f} "
          f"TFLOP/s, HBM {bound.memory_seconds * 1e3:.1f} ms at "
          f"{self.chip.hbm_bytes_per_second / 1e12:.2f} TB/s); MFU bound "
          f"{bound.mfu_bound(self.flops_per_device, self.chip):.0%} (XLA's FLOPs, recompute "
          "included)."]
    if self.scanned:
      lines.append("Scanned layers: XLA's cost analysis counts a loop's body once "
                   "(jax-ml/jax#18672), so the FLOPs, HBM traffic and roofline above are "
                   "undercounts; compile with --config.model.scan_layers=False for them.")
    return "\n".join(lines)


def batch_spec(config: ml_collections.ConfigDict, batch_sharding) -> dict:
  """Abstract global batch: the training transform's output on a blank example, batched."""
  size, channels = config.data.image_size, config.data.channels
  example = {"image": np.zeros((size, size, channels), np.uint8), "label": 0}
  if config.data.get("unlabelled", False):  # distillation: each image flagged
    example["labelled"] = True
  transform = transforms.train_transform(config.data)
  out = transform(example, np.random.default_rng(0))
  return {k: jax.ShapeDtypeStruct((config.batch_size,) + np.shape(v), np.asarray(v).dtype,
                                  sharding=batch_sharding) for k, v in out.items()}


def compile_train_step(compiled, config: ml_collections.ConfigDict, mesh: Mesh,
                       pod: "tpu_pods.PodSlice | None" = None, slices: int = 1) -> CompileReport:
  """Lowers and compiles `compiled.train_step` on abstract inputs and reads XLA's analyses."""
  started = time.perf_counter()
  lowered = compiled.train_step.lower(compiled.abstract_state,
                                      batch_spec(config, compiled.batch_sharding))
  executable = lowered.compile()
  seconds = time.perf_counter() - started
  memory = executable.memory_analysis()
  cost = executable.cost_analysis()
  if isinstance(cost, (list, tuple)):  # older JAX: one dict per program
    cost = cost[0]
  return CompileReport(
      mesh=dict(mesh.shape), devices=mesh.size, global_batch=config.batch_size,
      argument_bytes=int(memory.argument_size_in_bytes),
      output_bytes=int(memory.output_size_in_bytes),
      alias_bytes=int(memory.alias_size_in_bytes), temp_bytes=int(memory.temp_size_in_bytes),
      code_bytes=int(memory.generated_code_size_in_bytes),
      flops_per_device=float(cost.get("flops", float("nan"))), compile_seconds=seconds,
      bytes_accessed_per_device=float(cost.get("bytes accessed", float("nan"))),
      platform=(pod.name if slices == 1 else f"{slices} x {pod.name}") if pod else "",
      chip=pod.chip if pod else None, dtype=str(config.model.get("dtype", "")),
      scanned=bool(config.model.get("scan_layers", False)))
