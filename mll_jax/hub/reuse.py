"""Reuse in one compiled graph (shared/design/mll.md, section 5): every selected model's forward
pass, the gathering of the selected heads, their combination into logits over the target
classes and, for evaluation, the accuracy: all inside one `jax.jit`. Models of one architecture
are stacked and run with `vmap` over their variables; the batch is sharded over the data axis.
"""

import dataclasses
import json
from functools import partial
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from mll_jax import sharding
from mll_jax.hub import functional
from mll_jax.hub.selection import Selection


@dataclasses.dataclass
class Reuse:
  """`predict(images) -> logits [B, K]` and `evaluate(images, labels) -> accuracy` of a
  selection, each one compiled function; `variables` are the stacked variables it runs."""
  selection: Selection
  variables: tuple
  predict_fn: Callable
  evaluate_fn: Callable
  mesh: jax.sharding.Mesh

  def shard_batch(self, array):
    """`array` split along its first axis over the mesh, as `predict_fn` and `evaluate_fn`
    take their batches (its length a multiple of the device count)."""
    return jax.device_put(array, NamedSharding(self.mesh, PartitionSpec(self.mesh.axis_names)))

  def predict(self, images: np.ndarray) -> np.ndarray:
    """Logits over all target classes (-inf for classes the hub does not cover); the batch
    is padded to a multiple of the device count and the padding dropped."""
    n = len(images)
    pad = -n % self.mesh.size
    if pad:
      images = np.concatenate([images, np.repeat(images[-1:], pad, axis=0)])
    return np.asarray(self.predict_fn(self.variables, self.shard_batch(images)))[:n]

  def evaluate(self, images: np.ndarray, labels: np.ndarray, batch_size: int = 512) -> float:
    """Top-1 accuracy over `images` (batches padded to one compiled shape)."""
    batch_size = max(self.mesh.size, batch_size - batch_size % self.mesh.size)
    correct = 0
    for start in range(0, len(images), batch_size):
      chunk, chunk_labels = images[start:start + batch_size], labels[start:start + batch_size]
      valid = np.ones(batch_size, bool)
      if len(chunk) < batch_size:
        pad = batch_size - len(chunk)
        valid[len(chunk):] = False
        chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
        chunk_labels = np.concatenate([chunk_labels, np.repeat(chunk_labels[-1:], pad)])
      correct += int(self.evaluate_fn(self.variables, self.shard_batch(chunk),
                                      self.shard_batch(chunk_labels.astype(np.int32)),
                                      self.shard_batch(valid)))
    return correct / max(len(images), 1)


def _unrolled(fn):
  """`fn` on each model's variables in turn, written out in the graph, results stacked."""
  return lambda models: jnp.stack([fn(variables) for variables in models])


# How the models of one architecture run inside the graph (`build`'s `stacked_loop`).
STACKED_LOOPS = {"vmap": jax.vmap, "map": lambda fn: partial(jax.lax.map, fn),
                 "unroll": _unrolled}


def _combine(selection: Selection, head_scores, head_entropy):
  """Class scores over the covered classes from the gathered heads."""
  weights = jnp.asarray(selection.weights, jnp.float32)
  if selection.method == "topk":
    # Inverse-entropy weighting (the VLM variant of MLL): confident models count more.
    probs = jnp.exp(head_scores) / jnp.maximum(head_entropy, 1e-6)
    return jnp.log(probs @ weights + 1e-12)
  return head_scores @ weights + jnp.asarray(selection.bias, jnp.float32)


def build(selection: Selection, hub, mesh: jax.sharding.Mesh | None = None,
          stacked_loop: str | None = None) -> Reuse:
  """Loads the selected models (checksums verified) and compiles the reuse graph.

  `stacked_loop` runs each architecture's stacked models by `"vmap"` (one batched program),
  `"map"` (`lax.map`: one model after another inside the same compiled graph) or `"unroll"`
  (each model its own copy of the forward pass in the graph, on its own unstacked variables:
  no loop, so XLA may schedule the models side by side). Default: vmap on accelerators,
  unroll on CPU, where XLA's batched matmuls ran slower than separate ones and, on a mixed
  selection (2 ResNet-18 + 2 `mini` + 2 `tiny`), unroll ran 1.09x, 1.10x and 1.16x of calling
  each model in turn in three runs, map 0.99x, 1.00x and 1.06x, at about the same compile time
  (1-2 s; `benchmarks/results/reuse.md`, `report.md`).
  """
  mesh = mesh or sharding.make_mesh((("data", -1),))
  stacked_loop = stacked_loop or ("unroll" if jax.default_backend() == "cpu" else "vmap")
  if stacked_loop not in STACKED_LOOPS:
    raise ValueError(f"stacked_loop must be one of {', '.join(STACKED_LOOPS)}, got "
                     f"{stacked_loop!r}.")
  run_stacked = STACKED_LOOPS[stacked_loop]
  by_architecture: dict[str, list[str]] = {}
  for ref in selection.models:
    key = json.dumps(hub.show(ref).architecture, sort_keys=True)
    by_architecture.setdefault(key, []).append(ref)
  architectures = list(by_architecture)
  loaded = {ref: hub.load(ref)[1] for ref in selection.models}
  if stacked_loop == "unroll":  # a tuple of each model's own variables per architecture
    stacked = tuple(tuple(loaded[r] for r in refs) for refs in by_architecture.values())
  else:
    stacked = tuple(jax.tree.map(lambda *xs: np.stack(xs), *[loaded[r] for r in refs])
                    for refs in by_architecture.values())
  # Where each selected head sits: (architecture group, model within it, class index).
  place = {ref: (g, refs.index(ref)) for g, refs in enumerate(by_architecture.values())
           for ref in refs}
  head_index = [(place[ref][0], place[ref][1], c) for ref, c in selection.heads]
  applies = [functional.apply_fn(json.loads(a)) for a in architectures]
  covered = np.flatnonzero(selection.covered)
  num_classes = len(selection.classes)

  def logits(variables, images):
    log_probs, entropies = [], []
    for apply, group_variables in zip(applies, variables):
      lp = run_stacked(lambda v: jax.nn.log_softmax(apply(v, images), axis=-1))(
          group_variables)
      log_probs.append(lp)                                     # [models, B, C]
      entropies.append(-(jnp.exp(lp) * lp).sum(-1))            # [models, B]
    if head_index:
      head_scores = jnp.stack([log_probs[g][m, :, c] for g, m, c in head_index], axis=1)
      head_entropy = jnp.stack([entropies[g][m] for g, m, _ in head_index], axis=1)
      scores = _combine(selection, head_scores, head_entropy)
    else:  # every head was switched off (a large lambda): the bias alone decides
      scores = jnp.broadcast_to(jnp.asarray(selection.bias, jnp.float32),
                                (images.shape[0], len(covered)))
    full = jnp.full((images.shape[0], num_classes), -jnp.inf)
    return full.at[:, covered].set(scores)

  def evaluate(variables, images, labels, valid):
    predicted = logits(variables, images).argmax(-1)
    return jnp.sum((predicted == labels) & valid)

  replicated = NamedSharding(mesh, PartitionSpec())
  variables = jax.device_put(stacked, replicated)
  return Reuse(selection, variables, jax.jit(logits), jax.jit(evaluate), mesh)
