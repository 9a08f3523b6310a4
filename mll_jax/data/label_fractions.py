"""Deterministic, class-balanced labelled subsets: by fraction (`"1%"`, `0.1`) or shots (`"k=5"`).

The subset is a pure function of the split's labels and the seed, computed on the host, so
every device and process picks the same images. The rest of the split is the unlabelled pool.
"""

import numpy as np


def parse(spec) -> tuple[str, float]:
  """`"10%"`, `0.1` -> ("fraction", 0.1); `"k=5"` -> ("shots", 5); `""`/`"100%"` -> all."""
  if spec in (None, "", "all", "100%", 1.0, 1):
    return "fraction", 1.0
  if isinstance(spec, str) and spec.startswith("k="):
    shots = int(spec[2:])
    if shots < 1:
      raise ValueError(f"Label spec {spec!r}: shots per class must be at least 1.")
    return "shots", shots
  value = float(spec[:-1]) / 100 if isinstance(spec, str) and spec.endswith("%") else float(spec)
  if not 0 < value <= 1:
    raise ValueError(f"Label fraction {spec!r} must be in (0, 1] (or a percentage, or 'k=N').")
  return "fraction", value


def split_labelled(labels: np.ndarray, spec, seed: int, class_names=None):
  """`(labelled_indices, unlabelled_indices)`, both sorted, the labelled set class-balanced.

  Each class keeps `round(fraction * its size)` examples (or `shots`); a class left with none
  is an error that names it, since a classifier cannot learn a class it never sees.
  """
  kind, amount = parse(spec)
  labels = np.asarray(labels)
  rng = np.random.default_rng(seed)
  picked = []
  classes = range(len(class_names)) if class_names is not None else np.unique(labels)
  for c in classes:
    members = np.flatnonzero(labels == c)
    take = int(round(amount * len(members))) if kind == "fraction" else int(amount)
    name = class_names[c] if class_names is not None else str(c)
    if take < 1 or len(members) < take:
      raise ValueError(
          f"Label spec {spec!r} leaves class {name!r} with {min(take, len(members))} labelled "
          f"examples (it has {len(members)}); use a larger fraction or fewer shots.")
    picked.append(rng.choice(members, take, replace=False))
  labelled = np.sort(np.concatenate(picked))
  unlabelled = np.setdiff1d(np.arange(len(labels)), labelled)
  return labelled, unlabelled


def batch_size_for(batch_size: int, labelled: int) -> int:
  """`batch_size`, or the largest power of two within a labelled subset smaller than one batch
  (1% of animal_mnist is 70 images: batch 64), so a recipe's batch fits every fraction."""
  if labelled < 1:
    raise ValueError(f"A labelled subset of {labelled} images cannot be batched.")
  return min(batch_size, 1 << (labelled.bit_length() - 1))


class Subset:
  """A random-access source restricted to `indices` (what grain reads)."""

  def __init__(self, source, indices: np.ndarray):
    self.source, self.indices = source, np.asarray(indices)

  def __len__(self) -> int:
    return len(self.indices)

  def __getitem__(self, i):
    return self.source[int(self.indices[i])]

  def __getitems__(self, positions) -> list:
    return read_many(self.source, self.indices[np.asarray(positions, int)])

  def all_labels(self) -> np.ndarray:
    return split_labels(self.source)[self.indices]


class Flagged:
  """The whole source, each example with `labelled` True when its index is in `labelled`.

  For training on labelled and unlabelled images together (distillation); the label of an
  unlabelled example is still present but must not be used, and the flag says which.
  """

  def __init__(self, source, labelled: np.ndarray):
    self.source = source
    self.is_labelled = np.zeros(len(source), bool)
    self.is_labelled[np.asarray(labelled)] = True

  def __len__(self) -> int:
    return len(self.source)

  def __getitem__(self, i):
    return dict(self.source[int(i)], labelled=bool(self.is_labelled[int(i)]))

  def __getitems__(self, positions) -> list:
    return [dict(record, labelled=bool(self.is_labelled[int(i)]))
            for i, record in zip(positions, read_many(self.source, positions))]

  def all_labels(self) -> np.ndarray:
    return split_labels(self.source)


_READ_CHUNK = 4096  # records per batched read


def read_many(source, indices) -> list:
  """`[source[i] for i in indices]`, read in batches where the source can (`__getitems__`, as
  TFDS's array_record sources and this module's subsets do): one record at a time costs 17 s
  on MNIST's 60,000 training images on a 2-core CPU, batches 2.6 s."""
  indices = [int(i) for i in indices]
  batched = getattr(source, "__getitems__", None)
  if batched is None:
    return [source[i] for i in indices]
  return [record for start in range(0, len(indices), _READ_CHUNK)
          for record in batched(indices[start:start + _READ_CHUNK])]


def split_labels(source) -> np.ndarray:
  """All labels of a source, in index order.

  A wrapper that knows its labels (`all_labels()`: a subset indexes its parent's, so carving a
  holdout and then a labelled subset reads the split once) answers without reading; otherwise
  every record is read, in batches where the source can."""
  if hasattr(source, "all_labels"):
    return source.all_labels()
  return np.array([record["label"] for record in read_many(source, range(len(source)))])
