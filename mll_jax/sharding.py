"""Meshes from config, regex partition rules on parameter paths, and global batches.

`config.mesh = [("data", -1), ("fsdp", 1)]` names the axes (one size may be -1: the rest of the
devices). `config.sharding_rules = [(regex, spec), ...]` places every leaf of the train state by
the first rule whose regex matches its path ("params/encoder/transformer/blocks/0/fc1/kernel"):
`"fsdp"` (or any mesh axis name) shards the leaf's largest dimension divisible by that axis,
`"replicate"` keeps a full copy on every device. Batches are split over all mesh axes.
"""

import re
from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from mll_jax.models import layer_plan


def mesh_shape(mesh_config: Sequence[tuple[str, int]], num_devices: int) -> dict[str, int]:
  """Resolves `-1` and checks the product against the devices present."""
  names = [name for name, _ in mesh_config]
  sizes = [int(size) for _, size in mesh_config]
  if len(set(names)) != len(names):
    raise ValueError(f"config.mesh repeats an axis name: {names}.")
  if sizes.count(-1) > 1:
    raise ValueError(f"config.mesh may use -1 for at most one axis, got {list(mesh_config)}.")
  fixed = int(np.prod([s for s in sizes if s != -1]))
  if any(s == 0 or s < -1 for s in sizes):
    raise ValueError(f"config.mesh sizes must be positive or -1, got {list(mesh_config)}.")
  if -1 in sizes:
    if num_devices % fixed:
      raise ValueError(
          f"config.mesh {list(mesh_config)} needs a device count divisible by {fixed}, but "
          f"{num_devices} devices are present.")
    sizes[sizes.index(-1)] = num_devices // fixed
  total = int(np.prod(sizes))
  if total > num_devices:
    raise ValueError(
        f"config.mesh {list(mesh_config)} needs {total} devices but only {num_devices} are "
        f"present ({jax.default_backend()}). Use -1 for one axis to take the devices there "
        f"are, e.g. --config.mesh='((\"data\", -1), (\"fsdp\", 1))'.")
  return dict(zip(names, sizes))


def make_mesh(mesh_config: Sequence[tuple[str, int]], devices=None) -> Mesh:
  """A mesh with Auto axis types (sharding propagated by XLA) over `devices` (default all)."""
  devices = list(devices if devices is not None else jax.devices())
  shape = mesh_shape(mesh_config, len(devices))
  used = devices[:int(np.prod(list(shape.values())))]
  return jax.make_mesh(tuple(shape.values()), tuple(shape.keys()),
                       axis_types=(AxisType.Auto,) * len(shape), devices=used)


def path_to_str(path) -> str:
  """A pytree key path as 'a/b/0/c', the form the regex rules are written against."""
  parts = []
  for key in path:
    for attr in ("key", "idx", "name"):
      if hasattr(key, attr):
        parts.append(str(getattr(key, attr)))
        break
    else:
      parts.append(str(key))
  return "/".join(parts)


def _spec_for(shape: tuple[int, ...], rule: str, mesh: Mesh, first_dim: int = 0) -> P:
  if rule == "replicate" or not shape:
    return P()
  if rule not in mesh.shape:
    raise ValueError(f"Sharding rule names axis {rule!r}, which is not in the mesh "
                     f"{dict(mesh.shape)}; use a mesh axis name or 'replicate'.")
  axis_size = mesh.shape[rule]
  # FSDP: shard the largest dimension the axis divides; leaves nothing divides stay whole.
  # A scanned block stack (first_dim=1) keeps its layer axis whole: each scan iteration reads
  # one layer, which must not be spread over the devices.
  for dim in np.argsort(shape)[::-1]:
    if dim >= first_dim and shape[dim] % axis_size == 0 and shape[dim] >= axis_size:
      spec = [None] * len(shape)
      spec[dim] = rule
      return P(*spec)
  return P()


def tree_shardings(abstract_tree, rules: Sequence[tuple[str, str]], mesh: Mesh):
  """NamedShardings for every leaf of `abstract_tree` from the first matching regex rule."""
  compiled = [(re.compile(pattern), spec) for pattern, spec in rules]

  def leaf_sharding(path, leaf):
    name = path_to_str(path)
    for pattern, spec in compiled:
      if pattern.search(name):
        return NamedSharding(mesh, _spec_for(tuple(leaf.shape), spec, mesh,
                                             first_dim=int(layer_plan.is_stacked(name))))
    return NamedSharding(mesh, P())

  return jax.tree_util.tree_map_with_path(leaf_sharding, abstract_tree)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) dimension split over every mesh axis: data parallel and FSDP alike."""
  return NamedSharding(mesh, P(tuple(mesh.axis_names)))


def check_batch_size(global_batch: int, mesh: Mesh) -> None:
  """The global batch must split evenly over the devices and the processes."""
  if global_batch % mesh.size:
    raise ValueError(f"config.batch_size={global_batch} is not divisible by the {mesh.size} "
                     f"devices of the mesh; choose a multiple of {mesh.size}.")
  if global_batch % jax.process_count():
    raise ValueError(f"config.batch_size={global_batch} does not split over "
                     f"{jax.process_count()} processes.")


def global_batch(local_batch: dict, sharding: NamedSharding) -> dict:
  """Per-process numpy arrays -> one global jax.Array per key, laid out by `sharding`."""
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), local_batch)
