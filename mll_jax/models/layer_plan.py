"""How a transformer's blocks run: rematerialisation (`config.model.remat`), scanned layers
(`config.model.scan_layers`) and the attention kernel (`config.model.attention`), and the
conversion of parameters between the scanned and unscanned layouts.

Remat trades compute for memory: the backward pass recomputes what the forward pass did not
save. `full` saves only each block's input; `dots` saves every matmul output (elementwise work,
LayerNorms and GELUs are recomputed); `dots_no_batch` saves the matmuls without batch
dimensions (the dense layers) and recomputes attention's batched einsums, MaxText's usual
choice. Scanning compiles one block and loops over a stack of their parameters, so compile time
and program size stop growing with depth (big_vision's and MaxText's `scan_layers`).

Layouts: unscanned blocks are `blocks/0/...`, `blocks/1/...`; scanned blocks are one
`blocks/...` whose every leaf has a leading `depth` axis. `stack_blocks` and `unstack_blocks`
convert parameter trees (and checkpoints restored into them) either way.
"""

import dataclasses
import re
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mll_jax.models import attention as attention_kernels
from mll_jax.models import precision

REMAT_POLICIES = {
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.dots_saveable,
    "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


@dataclasses.dataclass(frozen=True)
class LayerPlan:
  """`remat`: a key of REMAT_POLICIES; `scan`: run the blocks as one `nnx.scan`; `attention`:
  one of `attention.IMPLEMENTATIONS` (mll_jax/models/attention.py)."""
  remat: str = "none"
  scan: bool = False
  attention: str = "auto"

  def __post_init__(self):
    if self.remat not in REMAT_POLICIES:
      raise ValueError(f"config.model.remat must be one of {', '.join(REMAT_POLICIES)}; got "
                       f"{self.remat!r}.")
    attention_kernels.implementation_for(self.attention)  # unknown: one message listing all

  @property
  def attention_implementation(self) -> str | None:
    """The kernel the blocks run (`attention.implementation_for`)."""
    return attention_kernels.implementation_for(self.attention)


PLAIN = LayerPlan()

# The `config.model` keys of how a model runs, with their defaults (configs/*.py add them).
EXECUTION_DEFAULTS = dict(dtype="auto", remat="none", scan_layers=False, attention="auto")


def from_config(model_config) -> LayerPlan:
  """The plan that `config.model` (or a teacher's model config) asks for; defaults: no remat,
  no scan, JAX's choice of attention kernel."""
  return LayerPlan(remat=model_config.get("remat", "none"),
                   scan=bool(model_config.get("scan_layers", False)),
                   attention=model_config.get("attention", "auto"))


def execution(model_config) -> dict:
  """Keyword arguments saying how a ViT-family model runs, not what it computes: `dtype`, the
  compute dtype of `config.model.dtype` ("auto" by default, see `precision`), and `layers`,
  the plan of `config.model.remat`, `scan_layers` and `attention`."""
  return {"dtype": precision.compute_dtype(model_config.get("dtype", "auto")),
          "layers": from_config(model_config)}


def rematerialised(fn: Callable, plan: LayerPlan) -> Callable:
  """`fn(block, x, ...)` wrapped in `nnx.remat` with the plan's policy (unchanged for none)."""
  if plan.remat == "none":
    return fn
  return nnx.remat(fn, policy=REMAT_POLICIES[plan.remat])


def stacked(make_block: Callable[[nnx.Rngs], nnx.Module], depth: int,
            rngs: nnx.Rngs) -> nnx.Module:
  """`depth` blocks from `make_block(rngs)`, as one module whose parameters have a leading
  `depth` axis (each layer initialised from its own split of `rngs`)."""

  @nnx.split_rngs(splits=depth)
  @nnx.vmap(in_axes=(0,), out_axes=0)
  def create(layer_rngs: nnx.Rngs):
    return make_block(layer_rngs)

  return create(rngs)


def scan_blocks(blocks: nnx.Module, x: jax.Array, keys: jax.Array | None, rates: jax.Array,
                plan: LayerPlan, keep_outputs: bool = False):
  """Runs a `stacked` module over `x` layer by layer: block i gets `keys[i]` (None: no drop
  path) and drop-path rate `rates[i]`. Returns the last block's output, or with `keep_outputs`
  `(last output, every block's output stacked on a leading layer axis)`."""
  block_step = rematerialised(lambda block, h, key, rate: block(h, key, rate), plan)

  def step(block, h, key, rate):
    h = _batch_sharded(block_step(block, h, key, rate))
    return (h, h) if keep_outputs else h
  out_axes = (nnx.Carry, 0) if keep_outputs else nnx.Carry
  if keys is None:
    body = lambda h, block, rate: step(block, h, None, rate)
    return nnx.scan(body, in_axes=(nnx.Carry, 0, 0), out_axes=out_axes)(x, blocks, rates)
  body = lambda h, block, key, rate: step(block, h, key, rate)
  return nnx.scan(body, in_axes=(nnx.Carry, 0, 0, 0), out_axes=out_axes)(
      x, blocks, keys, rates)


def _batch_sharded(h: jax.Array) -> jax.Array:
  """`h` with its batch axis split over every mesh axis, when traced under a mesh
  (`jax.sharding.use_abstract_mesh`, as the train step is). Inside a scanned loop over FSDP-
  sharded weights XLA's partitioner otherwise lost the batch sharding of the carried
  activations: MAE ViT-B/16 at batch 4096 on v5p-128 took 68 GiB per chip scanned against
  5.7 GiB unscanned (11.6 GiB with this constraint)."""
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty:
    return h
  return jax.lax.with_sharding_constraint(h, jax.sharding.PartitionSpec(mesh.axis_names))


# A parameter path inside a scanned block stack: `blocks/` not followed by a layer index.
_STACKED = re.compile(r"(?:^|/)blocks/(?!\d+(?:/|$))")


def is_stacked(path: str) -> bool:
  """Whether the leaf at `path` ("encoder/transformer/blocks/fc1/kernel") carries a leading
  layer axis (a scanned stack) rather than being one layer's."""
  return bool(_STACKED.search(path))


def _is_layer_list(node) -> bool:
  return isinstance(node, dict) and node and all(re.fullmatch(r"\d+", str(k)) for k in node)


def stack_blocks(tree):
  """A nested dict of parameters (or optimizer/ckpt leaves) in the unscanned layout, with every
  `blocks: {0: ..., 1: ...}` replaced by `blocks: ...` stacked on a leading axis."""
  if not isinstance(tree, dict):
    return tree
  out = {}
  for key, value in tree.items():
    if key == "blocks" and _is_layer_list(value):
      layers = [value[k] for k in sorted(value, key=int)]
      out[key] = jax.tree.map(lambda *leaves: _stack(leaves), *layers)
    else:
      out[key] = stack_blocks(value)
  return out


def unstack_blocks(tree, prefix: str = ""):
  """The inverse of `stack_blocks`: every `blocks` subtree whose leaves carry a leading layer
  axis becomes `blocks: {0: ..., depth-1: ...}`. A `blocks` subtree already in the unscanned
  layout passes through."""
  if not isinstance(tree, dict):
    return tree
  out = {}
  for key, value in tree.items():
    if key == "blocks" and isinstance(value, dict) and not _is_layer_list(value):
      depth = {np.shape(leaf)[0] for leaf in jax.tree.leaves(value)}
      if len(depth) != 1:
        raise ValueError(f"{prefix}/blocks: the stacked leaves disagree on the layer count "
                         f"({sorted(depth)}); not a scanned block stack.")
      out[key] = {i: jax.tree.map(lambda leaf, i=i: _layer(leaf, i), value)
                  for i in range(depth.pop())}
    else:
      out[key] = unstack_blocks(value, f"{prefix}/{key}")
  return out


def _stack(leaves):
  if isinstance(leaves[0], jax.ShapeDtypeStruct):
    return jax.ShapeDtypeStruct((len(leaves),) + leaves[0].shape, leaves[0].dtype)
  return jnp.stack(leaves) if isinstance(leaves[0], jax.Array) else np.stack(leaves)


def _layer(leaf, i: int):
  if isinstance(leaf, jax.ShapeDtypeStruct):
    return jax.ShapeDtypeStruct(leaf.shape[1:], leaf.dtype)
  return leaf[i]


def has_stacked_blocks(paths) -> bool:
  """Whether any of the parameter `paths` lies in a scanned block stack."""
  return any(is_stacked(p) for p in paths)
