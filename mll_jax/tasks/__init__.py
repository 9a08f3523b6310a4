"""Training objectives, one module each; the trainer picks one by `config.task`.

A task module provides::

  make_model(config, info, rngs) -> nnx.Module
  loss(model, batch, key, config) -> (scalar loss, dict of scalar metrics)
  features(model, images) -> [B, D] representation for evaluators
  eval_loss(model, batch, key) -> scalar held-out objective (deterministic model)

and, for classifiers, logits(model, images) -> [B, classes]; optionally validate(config),
called before a run writes anything, and init_sources(config) -> [InitSource], the checkpoints
a fresh run starts from (default: `config.init_from` alone).
"""

import dataclasses
import importlib

TASKS = ("distill", "expert", "mae", "simclr", "supervised")


def get(name: str):
  """The task module called `name`."""
  if name not in TASKS:
    raise ValueError(f"Unknown task {name!r}; known tasks: {', '.join(TASKS)}.")
  return importlib.import_module(f"mll_jax.tasks.{name}")


@dataclasses.dataclass(frozen=True)
class InitSource:
  """Params a fresh run loads: from the run at `path`, into the model's top-level key `into`
  ("" for the whole model), except those matching a `fresh` regex."""
  path: str
  into: str = ""
  fresh: tuple[str, ...] = ()


def init_sources(task, config) -> list[InitSource]:
  """The task's own `init_sources(config)`, else `config.init_from` (minus `init_fresh`)."""
  if hasattr(task, "init_sources"):
    return task.init_sources(config)
  if not config.get("init_from", ""):
    return []
  return [InitSource(config.init_from, fresh=tuple(config.get("init_fresh", ())))]
