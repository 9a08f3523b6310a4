"""Training objectives, one module each; the trainer picks one by `config.task`.

A task module provides:
  make_model(config, info, rngs) -> nnx.Module
  loss(model, batch, key, config) -> (scalar loss, dict of scalar metrics)
  features(model, images) -> [B, D] representation for evaluators
  eval_loss(model, batch, key) -> scalar held-out objective (deterministic model)
and, for classifiers, logits(model, images) -> [B, classes]; optionally validate(config),
called before a run writes anything.
"""

import importlib

TASKS = ("distill", "mae", "simclr", "supervised")


def get(name: str):
  """The task module called `name`."""
  if name not in TASKS:
    raise ValueError(f"Unknown task {name!r}; known tasks: {', '.join(TASKS)}.")
  return importlib.import_module(f"mll_jax.tasks.{name}")
