"""grain pipelines: the endless, shuffled, augmented training stream and eval arrays.

The training stream is a `grain.MapDataset`, so element `i` of epoch `e` is a pure function of
the seed, `e` and `i`: the iterator state is just a position, checkpointed with the train state,
and a resumed run sees the same batches as an uninterrupted one. The order and augmentation are
global: global batch `b` is elements `b*G .. b*G+G-1` of one seeded stream, and process `p` of
`P` yields rows `p*G/P ..` of it. So a run on 2 processes sees exactly the batches of the same
run on 1, and the iterator position after `n` steps is `n` on any number of processes.
"""

import grain
import jax
import numpy as np

from mll_jax.data import label_fractions, transforms


def train_dataset(source, *, local_batch_size: int, seed: int, transform,
                  process_index: int | None = None, process_count: int | None = None):
  """This process's share of the shuffled (a new order every epoch), augmented, batched,
  endless training stream."""
  process_index = jax.process_index() if process_index is None else process_index
  process_count = jax.process_count() if process_count is None else process_count
  global_batch = local_batch_size * process_count
  ds = grain.MapDataset.source(source)
  if len(ds) < global_batch:
    raise ValueError(f"The training split has {len(ds)} examples, fewer than one global batch "
                     f"of {global_batch}; lower config.batch_size.")
  ds = ds.shuffle(seed=seed).repeat(None)
  ds = ds.random_map(transform, seed=seed + 1)  # keyed by the global element index
  # Local batch k*P+p of the stream is process p's part of global batch k.
  ds = ds.batch(local_batch_size, drop_remainder=True)
  if process_count > 1:
    ds = ds.slice(slice(process_index, None, process_count))
  return ds


def train_iterator(dataset, worker_threads: int = 2, prefetch: int = 4):
  """A checkpointable iterator (`get_state` / `set_state`) with threaded read-ahead."""
  read_options = grain.ReadOptions(num_threads=worker_threads, prefetch_buffer_size=prefetch)
  return iter(dataset.to_iter_dataset(read_options))


def eval_arrays(source, *, size: int, channels: int, max_examples: int | None = None,
                seed: int = 0) -> dict:
  """A deterministic (seeded) subset of a split as `{"image", "label"}` numpy arrays."""
  n = len(source)
  if max_examples and max_examples < n:
    indices = np.sort(np.random.default_rng(seed).choice(n, max_examples, replace=False))
  else:
    indices = np.arange(n)
  transform = transforms.EvalTransform(size, channels)
  examples = [transform(record) for record in label_fractions.read_many(source, indices)]
  return {"image": np.stack([e["image"] for e in examples]),
          "label": np.array([e["label"] for e in examples], np.int32)}
