"""Held-out objective of the task (MAE: reconstruction loss) with fixed masks."""

import jax
import numpy as np

from mll_jax.evaluators import context as context_lib


class Evaluator:
  """Mean held-out loss over `num_examples` images of `split`, the same masks every time."""

  def __init__(self, name, cfg, ctx: context_lib.EvalContext):
    self.name, self.log_steps, self.ctx = name, cfg.log_steps, ctx
    self.batch_size = cfg.batch_size
    self.images = ctx.arrays(cfg.split, cfg.num_examples)["image"]
    eval_loss = ctx.task_function(name, "eval_loss")

    def per_example_loss(variables, images):
      # One key per image position in the batch: the same masks at every evaluation.
      keys = jax.random.split(jax.random.key(cfg.get("seed", 0)), images.shape[0])
      return jax.vmap(lambda img, k: ctx.apply(variables, eval_loss, {"image": img[None]}, k)
                      )(images, keys)

    self._fn = jax.jit(per_example_loss)

  def __call__(self, variables) -> dict:
    losses = context_lib.map_batches(self._fn, variables, self.images, self.batch_size,
                                     self.ctx.mesh)
    return {f"{self.name}/loss": float(np.mean(losses))}
