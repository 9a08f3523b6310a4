"""`rank`: the hub's backbones ordered by a transferability estimate on a user's few labelled
images (shared/design/mll.md, section 6), for choosing what to fine-tune."""

import dataclasses
import functools

import jax
import numpy as np

from mll_jax import sharding
from mll_jax.evaluators import context as eval_context
from mll_jax.hub import functional, transferability


@dataclasses.dataclass(frozen=True)
class Ranked:
  ref: str
  score: float
  metric: str


@functools.lru_cache(maxsize=64)
def _jitted(fn):
  return jax.jit(fn)


def rank(hub, images: np.ndarray, labels: np.ndarray, metric: str = "logme",
         batch_size: int = 256) -> list[Ranked]:
  """Every entry of `hub` scored by `metric` (logme, leep, nce, hscore) on the labelled
  `images`, best first. Features / predictions are computed in jitted, sharded batches."""
  if metric not in transferability.METRICS:
    raise ValueError(f"Unknown metric {metric!r}; use one of "
                     f"{', '.join(transferability.METRICS)}.")
  entries = hub.entries()
  if not entries:
    raise ValueError(f"The hub {hub.directory} is empty: nothing to rank.")
  labels = np.asarray(labels, np.int32)
  num_classes = int(labels.max()) + 1
  mesh = sharding.make_mesh((("data", -1),))
  results = []
  for entry in entries:
    _, variables = hub.load(entry.ref)
    if transferability.USES_FEATURES[metric]:
      fn = _jitted(functional.features_fn(entry.architecture))
      values = eval_context.map_batches(fn, variables, images, batch_size, mesh)
    else:
      apply = _jitted(functional.apply_fn(entry.architecture))
      values = jax.nn.softmax(eval_context.map_batches(apply, variables, images, batch_size,
                                                       mesh), axis=-1)
    score = transferability.METRICS[metric](values, labels, num_classes=num_classes)
    results.append(Ranked(entry.ref, float(score), metric))
  return sorted(results, key=lambda r: -r.score)
