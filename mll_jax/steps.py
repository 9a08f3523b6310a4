"""The jitted, sharded pieces of training: state creation and the train step.

Models are Flax NNX modules used functionally at the jit boundary: the train state is a plain
pytree `{"step", "params", "opt_state"}` (params as a pure dict) plus `"model_state"` for models
that keep non-parameter state (BatchNorm statistics), and the step rebuilds the model with
`nnx.merge`. Gradients are taken over params only; the forward pass returns the new model state. Every leaf is placed by the regex sharding rules, computed on
`jax.eval_shape` output; state is created directly in place by `jax.jit(out_shardings=...)`.
"""

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from mll_jax import sharding


@dataclasses.dataclass
class CompiledTraining:
  """What the training loop needs: shardings, abstract state and the jitted functions."""
  graphdef: Any
  abstract_state: Any          # ShapeDtypeStructs carrying the target shardings
  state_shardings: Any
  batch_sharding: NamedSharding
  init: Callable               # () -> state
  train_step: Callable         # (state, batch) -> (state, metrics)
  apply: Callable              # (variables, fn, *args): fn(rebuilt model, *args), for evaluators


def _model_factory(task, config, info):
  return lambda key: task.make_model(config, info, nnx.Rngs(key))


def split_model(model: nnx.Module):
  """`(graphdef, params, model_state)` of an NNX module, the last two as pure dicts."""
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  return graphdef, nnx.to_pure_dict(params), nnx.to_pure_dict(rest)


def variables(state: dict) -> dict:
  """What rebuilds the model from a train state: params (+ model_state when there is one)."""
  return {k: state[k] for k in ("params", "model_state") if k in state}


def merge(graphdef, variables: dict) -> nnx.Module:
  """The model rebuilt from `variables`."""
  parts = [variables["params"]] + ([variables["model_state"]] if "model_state" in variables else [])
  return nnx.merge(graphdef, *parts)


def build(task, config: ml_collections.ConfigDict, info, tx: optax.GradientTransformation,
          mesh: Mesh, schedule: optax.Schedule | None = None) -> CompiledTraining:
  """Shards and jits state creation and the train step for `mesh`."""
  make_model = _model_factory(task, config, info)
  base_key = jax.random.key(config.seed)

  def init():
    _, params, model_state = split_model(make_model(jax.random.fold_in(base_key, 0)))
    state = {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": tx.init(params)}
    if model_state:
      state["model_state"] = model_state
    return state

  graphdef = split_model(nnx.eval_shape(lambda: make_model(jax.random.key(0))))[0]
  shape_tree = jax.eval_shape(init)
  state_shardings = sharding.tree_shardings(shape_tree, config.sharding_rules, mesh)
  abstract_state = jax.tree.map(
      lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shape_tree, state_shardings)
  batch_sharding = sharding.batch_sharding(mesh)
  replicated = NamedSharding(mesh, P())

  def train_step(state, batch):
    # The step's randomness (MAE masks) is a function of the seed and the step alone, so a
    # resumed run draws exactly the masks an uninterrupted one would.
    key = jax.random.fold_in(jax.random.fold_in(base_key, 1), state["step"])

    def loss_of(params):
      model = merge(graphdef, dict(variables(state), params=params))
      loss, metrics = task.loss(model, batch, key, config)
      return loss, (metrics, split_model(model)[2])

    # Under the mesh, so layers can keep activations batch-sharded (layer_plan._batch_sharded).
    with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
      (loss, (metrics, model_state)), grads = jax.value_and_grad(loss_of, has_aux=True)(
          state["params"])
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    # A non-finite step changes nothing, so the state stays the last good one for the host
    # to stop on with a clear message (and never to checkpoint).
    keep_old = lambda new, old: jnp.where(finite, new, old)
    new_state = {"step": state["step"] + finite.astype(jnp.int32),
                 "params": jax.tree.map(keep_old, params, state["params"]),
                 "opt_state": jax.tree.map(keep_old, opt_state, state["opt_state"])}
    if "model_state" in state:
      new_state["model_state"] = jax.tree.map(keep_old, model_state, state["model_state"])
    metrics = dict(metrics, grad_norm=grad_norm, finite=finite)
    if schedule is not None:
      metrics["learning_rate"] = schedule(state["step"])
    return new_state, metrics

  jit_init = jax.jit(init, out_shardings=state_shardings)
  jit_step = jax.jit(train_step, in_shardings=(state_shardings, batch_sharding),
                     out_shardings=(state_shardings, replicated), donate_argnums=(0,))

  def apply(model_variables, fn, *args):
    return fn(merge(graphdef, model_variables), *args)

  return CompiledTraining(graphdef, abstract_state, state_shardings, batch_sharding,
                          jit_init, jit_step, apply)
