"""The optax optimiser from `config.optim`: AdamW, warm-up + cosine, no decay on 1-D params."""

import jax
import ml_collections
import optax


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
  values and are exempt: a leaf decays when it has more elements than its last dimension.
  """
  return jax.tree.map(lambda p: p.size > p.shape[-1], params)


def make(optim: ml_collections.ConfigDict, batch_size: int, total_steps: int,
         warmup_steps: int) -> optax.GradientTransformation:
  """Builds the optimiser named by `optim.name` (currently `adamw`) with clipping."""
  if optim.name != "adamw":
    raise ValueError(f"Unknown optimiser {optim.name!r}; supported: 'adamw'.")
  lr = schedule(optim, batch_size, total_steps, warmup_steps)
  parts = []
  if optim.get("grad_clip_norm"):
    parts.append(optax.clip_by_global_norm(optim.grad_clip_norm))
  parts.append(optax.adamw(lr, b1=optim.b1, b2=optim.b2, weight_decay=optim.weight_decay,
                           mask=decay_mask))
  return optax.chain(*parts)
