"""A hub entry as a pure function: rebuild `apply_fn(variables, images) -> logits` from the
architecture an entry stores, and measure its cost from the compiled function.

The architecture is the part of a training config that fixes the model's graph:
`{"task": "supervised", "model": {...}, "image_size": 28, "channels": 1, "num_classes": 3}`.
Any task with a `logits` function works (supervised, expert, distill).
"""

import functools
import json
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from mll_jax import steps, tasks
from mll_jax.data import sources


def architecture_from_config(config: ml_collections.ConfigDict, num_classes: int) -> dict:
  """The architecture dict of a training config (JSON-serialisable)."""
  return {"task": config.task, "model": config.model.to_dict(),
          "image_size": int(config.data.image_size), "channels": int(config.data.channels),
          "num_classes": int(num_classes),
          **({"teacher": config.teacher.to_dict()} if "teacher" in config else {})}


def _model_config(architecture: dict) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict({
      "task": architecture["task"], "model": architecture["model"],
      "data": {"image_size": architecture["image_size"], "channels": architecture["channels"]}})
  if "teacher" in architecture:
    config.teacher = architecture["teacher"]
  return config


def _info(architecture: dict) -> sources.DatasetInfo:
  size, channels = architecture["image_size"], architecture["channels"]
  return sources.DatasetInfo(name="hub", class_names=tuple(
      str(i) for i in range(architecture["num_classes"])), image_shape=(size, size, channels),
      split_sizes={})


@functools.lru_cache(maxsize=64)
def _graphdef(architecture_json: str):
  architecture = json.loads(architecture_json)
  task = tasks.get(architecture["task"])
  if not hasattr(task, "logits"):
    raise ValueError(f"Task {architecture['task']!r} has no classifier output; hub entries "
                     "must be classifiers (supervised, expert, distill).")
  config = _model_config(architecture)
  model = nnx.eval_shape(lambda: task.make_model(config, _info(architecture), nnx.Rngs(0)))
  graphdef, params, model_state = steps.split_model(model)
  abstract = {"params": params, **({"model_state": model_state} if model_state else {})}
  return task, graphdef, abstract


def abstract_variables(architecture: dict):
  """Shapes and dtypes of the variables (`{"params", ["model_state"]}`) the model takes."""
  return _graphdef(json.dumps(architecture, sort_keys=True))[2]


def init_variables(architecture: dict, seed: int = 0) -> dict:
  """Freshly initialised variables of the architecture (tests, and models built in memory)."""
  task, _, _ = _graphdef(json.dumps(architecture, sort_keys=True))
  model = task.make_model(_model_config(architecture), _info(architecture), nnx.Rngs(seed))
  _, params, model_state = steps.split_model(model)
  return {"params": params, **({"model_state": model_state} if model_state else {})}


def apply_fn(architecture: dict) -> Callable:
  """`apply(variables, images) -> logits` (evaluation mode), a pure function, not jitted: the
  caller jits it alone or fuses it into a larger graph. The same function object for equal
  architectures, so jitted callers compile once per architecture."""
  return _task_fn(json.dumps(architecture, sort_keys=True), "logits")


def features_fn(architecture: dict) -> Callable:
  """`features(variables, images) -> [B, D]`, the backbone's pooled representation (the
  task's `features`), cached per architecture like `apply_fn`."""
  return _task_fn(json.dumps(architecture, sort_keys=True), "features")


@functools.lru_cache(maxsize=128)
def _task_fn(architecture_json: str, name: str) -> Callable:
  """The task's function `name` (logits, features) as a pure `fn(variables, images)`."""
  task, graphdef, _ = _graphdef(architecture_json)
  task_function = getattr(task, name)

  def fn(variables, images):
    return task_function(steps.merge(graphdef, variables), images)

  return fn


@functools.lru_cache(maxsize=64)
def _flops(architecture_json: str) -> float:
  architecture = json.loads(architecture_json)
  abstract = abstract_variables(architecture)
  images = jax.ShapeDtypeStruct(
      (1, architecture["image_size"], architecture["image_size"], architecture["channels"]),
      jnp.uint8)
  compiled = jax.jit(apply_fn(architecture)).lower(abstract, images).compile()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost  # older JAX: one per device
  return float(cost.get("flops", 0.0))


def flops_per_image(architecture: dict) -> float:
  """FLOPs of one image through the model, from XLA's cost analysis of the compiled function
  (cached per architecture: every entry of one architecture costs the same)."""
  return _flops(json.dumps(architecture, sort_keys=True))


def parameter_count(variables) -> int:
  """Number of scalars in the params (model state such as BatchNorm statistics excluded)."""
  return int(sum(np.size(x) for x in jax.tree.leaves(variables["params"])))
