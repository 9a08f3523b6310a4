"""What evaluators share: the mesh, the task, data access and a padded, sharded batch map."""

import dataclasses
from typing import Any, Callable

import jax
import numpy as np
from jax.sharding import Mesh

from mll_jax import multihost, sharding
from mll_jax.data import class_subsets, holdout, pipeline, sources


@dataclasses.dataclass
class EvalContext:
  """Everything an evaluator may need from the run it evaluates."""
  config: Any
  task: Any
  builder: Any
  mesh: Mesh
  apply: Callable  # apply(variables, fn, *args) -> fn(model, *args)
  class_indices: tuple[int, ...] = ()  # the run's class subset (config.classes), if any

  @property
  def num_classes(self) -> int:
    return len(self.class_indices) or len(self.builder.info.features["label"].names)

  def task_function(self, evaluator: str, name: str) -> Callable:
    """The task's `name` function, or a clear error naming the evaluator that needs it."""
    if not hasattr(self.task, name):
      raise ValueError(f"Evaluator {evaluator!r} needs the task's `{name}`, which task "
                       f"{self.config.task!r} does not define; remove config.evals.{evaluator}.")
    return getattr(self.task, name)

  def arrays(self, split: str, max_examples: int, seed: int = 0) -> dict:
    """A deterministic subset of `split` as numpy arrays, in the model's image format;
    `split="holdout"` is the part of the training split that `config.data.validation` holds
    out (see data/holdout.py), and the run's training split is read without it."""
    source = self._source(split)
    return pipeline.eval_arrays(source,
                                size=self.config.data.image_size,
                                channels=self.config.data.channels,
                                max_examples=max_examples, seed=seed)

  def _source(self, split: str):
    train_split = self.config.data.train_split
    if split not in (holdout.HOLDOUT, train_split):
      return class_subsets.apply(sources.data_source(self.builder, split), self.class_indices)
    train = class_subsets.apply(sources.data_source(self.builder, train_split),
                                self.class_indices)
    names = self.builder.info.features["label"].names
    names = [names[i] for i in self.class_indices] if self.class_indices else names
    # The run's training split without its holdout: a few-shot probe scored on the holdout
    # must not fit on the very images it scores.
    rest, held_out = holdout.carve(train, self.config.data, names)
    if split == train_split:
      return rest
    if held_out is None:
      raise ValueError("An evaluator reads split 'holdout', but config.data.validation is 0: "
                       "set it to the fraction of the training split to hold out (e.g. 0.1).")
    return held_out


def map_batches(fn: Callable, variables, images: np.ndarray, batch_size: int, mesh: Mesh):
  """Applies a jitted `fn(variables, images)` over `images` in batches sharded over the mesh.

  The last batch is padded to full size (one compiled shape) and the padding dropped.
  """
  batch_size = max(mesh.size, batch_size - batch_size % mesh.size)
  batch_sharding = sharding.batch_sharding(mesh)
  outputs = []
  for start in range(0, len(images), batch_size):
    chunk = images[start:start + batch_size]
    pad = batch_size - len(chunk)
    if pad:
      chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
    # Every process holds all of `images`; each places the rows its devices own.
    placed = jax.make_array_from_callback(chunk.shape, batch_sharding,
                                          lambda index, c=chunk: c[index])
    out = multihost.to_host(fn(variables, placed))
    outputs.append(jax.tree.map(lambda x, n=len(chunk) - pad: x[:n], out))
  return jax.tree.map(lambda *xs: np.concatenate(xs), *outputs)
