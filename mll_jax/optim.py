"""The optax optimiser from `config.optim`: AdamW, warm-up + cosine, no decay on 1-D params."""

import re

import jax
import ml_collections
import numpy as np
import optax

from mll_jax import sharding
from mll_jax.models import layer_plan


def learning_rate(optim: ml_collections.ConfigDict, batch_size: int) -> float:
  """Peak learning rate; `base_lr` is scaled linearly with the batch (lr = base * batch / 256)."""
  return optim.base_lr * batch_size / optim.get("base_batch_size", 256)


def schedule(optim: ml_collections.ConfigDict, batch_size: int, total_steps: int,
             warmup_steps: int) -> optax.Schedule:
  """Linear warm-up to the peak, then cosine decay to `min_lr_ratio * peak` at `total_steps`."""
  peak = learning_rate(optim, batch_size)
  warmup_steps = min(warmup_steps, max(total_steps - 1, 0))
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=peak, warmup_steps=warmup_steps,
      decay_steps=max(total_steps, warmup_steps + 1), end_value=peak * optim.get("min_lr_ratio", 0.0))


def decay_mask(params):
  """Weight decay applies to matrices only (MAE rule).

  Biases, norm scales and the cls / mask tokens (shape `[1, 1, width]`) hold a single row of
  values and are exempt: a leaf decays when it has more elements than its last dimension. In a
  scanned block stack the leading layer axis does not count (a stack of biases is exempt).
  """
  def one(path, p):
    shape = p.shape[1:] if layer_plan.is_stacked(sharding.path_to_str(path)) else p.shape
    return int(np.prod(shape)) > shape[-1]

  return jax.tree_util.tree_map_with_path(one, params)


_BLOCK = re.compile(r"(?:^|/)blocks/(\d+)/")


def layer_id(path: str, num_layers: int) -> int:
  """MAE's `get_layer_id_for_vit`: embeddings 0, block i -> i + 1, the rest num_layers + 1.

  Only the encoder's blocks count as layers (an MAE decoder's blocks are the last group).
  """
  if path.startswith("encoder/") and ("patch_embed" in path or "cls_token" in path):
    return 0
  match = _BLOCK.search(path)
  if match and path.startswith("encoder/"):
    return int(match.group(1)) + 1
  return num_layers + 1


def lr_multipliers(optim: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Scales each parameter's update: `layer_decay ** (L + 1 - layer_id)`, 0 for `freeze` regexes.

  Scaling the final AdamW update is the same as a per-group learning rate (AdamW's decoupled
  weight decay is multiplied by the learning rate too), so one stateless transform covers
  layer-wise decay (MAE fine-tuning) and frozen trunks (linear probing).
  """
  decay = optim.get("layer_decay", 1.0)
  frozen = [re.compile(p) for p in optim.get("freeze", ())]

  def scale(updates, params=None):
    del params
    leaves = [(sharding.path_to_str(p), u)
              for p, u in jax.tree_util.tree_flatten_with_path(updates)[0]]
    num_layers = max([int(m.group(1)) + 1 for p, _ in leaves if p.startswith("encoder/")
                      for m in [_BLOCK.search(p)] if m] +
                     [u.shape[0] for p, u in leaves
                      if p.startswith("encoder/") and layer_plan.is_stacked(p)] or [0])

    def one(path, update):
      name = sharding.path_to_str(path)
      if any(f.search(name) for f in frozen):
        return update * 0.0
      if name.startswith("encoder/") and layer_plan.is_stacked(name):
        # A scanned stack: layer i of the leading axis gets block i's multiplier.
        ids = np.arange(update.shape[0]) + 1
        scales = (decay ** (num_layers + 1 - ids)).reshape((-1,) + (1,) * (update.ndim - 1))
        return update * scales.astype(update.dtype)
      return update * decay ** (num_layers + 1 - layer_id(name, num_layers))

    return jax.tree_util.tree_map_with_path(one, updates)

  return optax.stateless(scale)


def make(optim: ml_collections.ConfigDict, batch_size: int, total_steps: int,
         warmup_steps: int) -> optax.GradientTransformation:
  """Builds the optimiser named by `optim.name` (`adamw` or `lars`) with clipping, layer-wise
  learning-rate decay (`layer_decay`) and frozen parameters (`freeze`)."""
  lr = schedule(optim, batch_size, total_steps, warmup_steps)
  parts = []
  if optim.get("grad_clip_norm"):
    parts.append(optax.clip_by_global_norm(optim.grad_clip_norm))
  if optim.name == "adamw":
    parts.append(optax.adamw(lr, b1=optim.b1, b2=optim.b2, weight_decay=optim.weight_decay,
                             mask=decay_mask))
  elif optim.name == "lars":  # MAE's linear probe: LARS, momentum 0.9
    parts.append(optax.lars(lr, weight_decay=optim.weight_decay, momentum=optim.get("momentum", 0.9),
                            weight_decay_mask=decay_mask, trust_ratio_mask=decay_mask))
  else:
    raise ValueError(f"Unknown optimiser {optim.name!r}; supported: 'adamw', 'lars'.")
  if optim.get("layer_decay", 1.0) != 1.0 or optim.get("freeze", ()):
    parts.append(lr_multipliers(optim))
  return optax.chain(*parts)
