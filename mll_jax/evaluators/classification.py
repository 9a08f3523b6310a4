"""Top-1 accuracy (and mean loss) of a classifier on a split, deterministic model."""

import jax
import numpy as np
import optax

from mll_jax.evaluators import context as context_lib


class Evaluator:
  """`<name>/accuracy`, `<name>/loss` and `<name>/examples` over `num_examples` images of
  `split` (0: all; only the run's classes when it has a class subset)."""

  def __init__(self, name, cfg, ctx: context_lib.EvalContext):
    self.name, self.log_steps, self.ctx, self.cfg = name, cfg.log_steps, ctx, cfg
    self.data = ctx.arrays(cfg.split, cfg.get("num_examples", 0) or None)
    logits = ctx.task_function(name, "logits")
    self._logits = jax.jit(lambda variables, images: ctx.apply(variables, logits, images))

  def __call__(self, variables) -> dict:
    logits = context_lib.map_batches(self._logits, variables, self.data["image"],
                                     self.cfg.batch_size, self.ctx.mesh)
    labels = self.data["label"]
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    return {f"{self.name}/accuracy": float((logits.argmax(-1) == labels).mean()),
            f"{self.name}/loss": float(loss), f"{self.name}/examples": len(labels)}
