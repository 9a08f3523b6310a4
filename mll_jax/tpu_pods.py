"""TPU pod slices by their Cloud names (`v5p-128`, `v5e-256`, `v4-32`), as compile targets
from any host: `jax.experimental.topologies.get_topology_desc` (libtpu, `pip install
"jax[tpu]"`) gives devices that XLA's TPU compiler can compile a sharded program for, without a
TPU attached. MaxText's `train_compile.py` and axlearn's `aot_compilation.py` do the same.

Naming follows Cloud TPU: v5e-N counts chips (one TensorCore each); v4-N and v5p-N count
TensorCores, two per chip, and JAX sees one device per chip (megacore). Chip figures are
Google's published per-chip peaks (bfloat16 matmul FLOP/s, HBM capacity and bandwidth).
"""

import dataclasses
import os

import numpy as np
from jax.sharding import AxisType, Mesh

from mll_jax import libtpu_without_chips, sharding


class TopologyError(ValueError):
  """An unknown pod slice name, or no TPU compiler here; the message says what to do."""


@dataclasses.dataclass(frozen=True)
class Chip:
  """One TPU generation: how get_topology_desc names it and its per-chip peaks."""
  topology_prefix: str     # "v5e" -> topology "v5e:4x4"
  chip_config: str         # "default" (one core) or "megacore"
  cores_per_name_unit: int  # a v5p-128 has 128 cores = 64 chips; a v5e-16 16 chips
  hbm_bytes: int
  peak_bf16_flops: float
  hbm_bytes_per_second: float


CHIPS = {
    "v4": Chip("v4", "megacore", 2, 32 * 2**30, 275e12, 1.2e12),
    "v5e": Chip("v5e", "default", 1, 16 * 2**30, 197e12, 0.82e12),
    "v5p": Chip("v5", "megacore", 2, 95 * 2**30, 459e12, 2.765e12),
    "v6e": Chip("v6e", "default", 1, 32 * 2**30, 918e12, 1.64e12),
}

# Chips per slice -> the slice's physical shape (2-D tori for v5e/v6e, 3-D for v4/v5p).
_SHAPES_2D = {1: "1x1", 4: "2x2", 8: "2x4", 16: "4x4", 32: "4x8", 64: "8x8", 128: "8x16",
              256: "16x16"}
_SHAPES_3D = {4: "2x2x1", 8: "2x2x2", 16: "2x2x4", 32: "2x4x4", 64: "4x4x4", 128: "4x4x8",
              256: "4x8x8", 512: "8x8x8", 1024: "8x8x16", 2048: "8x16x16", 4096: "16x16x16"}


@dataclasses.dataclass(frozen=True)
class PodSlice:
  """A named slice: its chip, chip count and get_topology_desc's topology name."""
  name: str
  chip: Chip
  chips: int
  topology: str


def valid_names() -> list[str]:
  """Every slice name this module knows, for error messages."""
  names = []
  for generation, chip in CHIPS.items():
    shapes = _SHAPES_3D if chip.chip_config == "megacore" else _SHAPES_2D
    names += [f"{generation}-{chips * chip.cores_per_name_unit}" for chips in shapes]
  return names


def pod_slice(name: str) -> PodSlice:
  """`v5p-128` -> its PodSlice; an unknown name gets one message listing the valid ones."""
  generation, _, count = name.partition("-")
  chip = CHIPS.get(generation)
  shapes = _SHAPES_3D if chip and chip.chip_config == "megacore" else _SHAPES_2D
  chips = int(count) // chip.cores_per_name_unit if chip and count.isdigit() else -1
  if chip is None or not count.isdigit() or chips not in shapes or \
      chips * chip.cores_per_name_unit != int(count):
    raise TopologyError(f"Unknown TPU topology {name!r}; valid names: "
                        f"{', '.join(valid_names())}.")
  return PodSlice(name, chip, chips, f"{chip.topology_prefix}:{shapes[chips]}")


def devices(slice_: PodSlice, num_slices: int = 1) -> list:
  """Compile-only devices of `num_slices` copies of the slice (slice-major order)."""
  if num_slices < 1:
    raise TopologyError(f"--topology_slices must be at least 1, got {num_slices}.")
  # Without these, libtpu asks the (absent) GCE metadata server who this host is, and takes its
  # one-process lock (libtpu_without_chips): set here, where libtpu is about to load, since
  # importing mll_jax sets nothing.
  os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
  libtpu_without_chips.configure()
  try:
    from jax.experimental import topologies
    topology = topologies.get_topology_desc(
        platform="tpu", topology_name=slice_.topology, chip_config_name=slice_.chip.chip_config,
        chips_per_host_bounds=(2, 2, 1), num_slices=num_slices)
  except (RuntimeError, ImportError, ValueError) as e:
    raise TopologyError(f"Compiling for {slice_.name} needs libtpu: pip install \"jax[tpu]\" "
                       f"(the same jax version). JAX said: {str(e).splitlines()[0]}") from e
  return list(topology.devices)


@dataclasses.dataclass(frozen=True)
class Roofline:
  """Lower bounds on a step from a per-device program's FLOPs and HBM traffic."""
  compute_seconds: float
  memory_seconds: float

  @property
  def step_seconds(self) -> float:
    return max(self.compute_seconds, self.memory_seconds)

  def mfu_bound(self, model_flops_per_device: float, chip: Chip) -> float:
    """The highest model FLOPs utilisation the step can reach: model FLOPs (no recompute)
    over what the chip could do in the roofline step time."""
    return model_flops_per_device / (self.step_seconds * chip.peak_bf16_flops)


def roofline(flops_per_device: float, bytes_per_device: float, chip: Chip) -> Roofline:
  """Compute time at peak FLOP/s and HBM time at peak bandwidth, per device."""
  return Roofline(flops_per_device / chip.peak_bf16_flops,
                  bytes_per_device / chip.hbm_bytes_per_second)


def pod_mesh(mesh_config, slice_: PodSlice, num_slices: int = 1) -> Mesh:
  """`config.mesh` (axis sizes, one may be -1) over the compile-only devices of `num_slices`
  copies of the slice, with Auto axis types like `sharding.make_mesh`."""
  pod_devices = devices(slice_, num_slices)
  shape = sharding.mesh_shape(mesh_config, len(pod_devices))
  if int(np.prod(list(shape.values()))) != len(pod_devices):
    raise ValueError(f"config.mesh {dict(shape)} uses {int(np.prod(list(shape.values())))} of "
                     f"the {len(pod_devices)} chips of {num_slices} x {slice_.name}; a pod "
                     "compile uses every chip (give one axis -1).")
  return Mesh(device_grid(pod_devices, shape, num_slices), tuple(shape),
              axis_types=(AxisType.Auto,) * len(shape))


def device_grid(devices_: list, mesh_shape: dict, num_slices: int) -> np.ndarray:
  """Devices laid out for `mesh_shape` (axis -> size): across slices only the first axis
  (data parallelism over the data-centre network), inside a slice the rest (the ICI torus)."""
  from jax.experimental import mesh_utils
  sizes = list(mesh_shape.values())
  if num_slices == 1:
    return mesh_utils.create_device_mesh(sizes, devices=devices_)
  if sizes[0] % num_slices:
    raise ValueError(f"The mesh's first axis ({list(mesh_shape)[0]}={sizes[0]}) must be a "
                     f"multiple of --topology_slices={num_slices}: data parallelism is what "
                     "crosses slices.")
  ici = [sizes[0] // num_slices] + sizes[1:]
  dcn = [num_slices] + [1] * (len(sizes) - 1)
  return mesh_utils.create_hybrid_device_mesh(ici, dcn, devices=devices_)
