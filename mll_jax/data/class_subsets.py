"""A named subset of a data set's classes (`config.classes = "cat,dog,horse"`), relabelled
0..k-1 in the order given: how one data set yields many experts with overlapping class sets."""

import dataclasses

import numpy as np

from mll_jax.data import label_fractions, sources


def resolve(spec, class_names: tuple[str, ...]) -> tuple[int, ...]:
  """Class indices for `spec` (comma-separated names or a sequence of them); `()` for all.
  Unknown or repeated names are an error that lists the data set's classes."""
  if not spec:
    return ()
  names = [n.strip() for n in (spec.split(",") if isinstance(spec, str) else spec)]
  unknown = [n for n in names if n not in class_names]
  if unknown:
    raise ValueError(f"config.classes names unknown classes {unknown}; the data set has: "
                     f"{', '.join(class_names)}.")
  if len(set(names)) != len(names) or len(names) < 2:
    raise ValueError(f"config.classes={spec!r} must list at least two distinct classes.")
  return tuple(class_names.index(n) for n in names)


def restrict_info(info: sources.DatasetInfo, indices: tuple[int, ...]) -> sources.DatasetInfo:
  """The data set's description with only the chosen classes, in the chosen order."""
  if not indices:
    return info
  return dataclasses.replace(info, class_names=tuple(info.class_names[i] for i in indices))


class ClassSubset:
  """The examples of `source` whose label is in `indices`, labels renumbered to their position
  in `indices`. Reads every label once at construction (offline-sized data sets)."""

  def __init__(self, source, indices: tuple[int, ...], labels: np.ndarray | None = None):
    labels = labels if labels is not None else label_fractions.split_labels(source)
    self.source = source
    self.positions = np.flatnonzero(np.isin(labels, indices))
    # Old label -> position in `indices` (-1 for classes left out), for records and labels alike.
    self._new_label = np.full(max(int(np.max(labels, initial=0)), *indices) + 1, -1)
    self._new_label[list(indices)] = np.arange(len(indices))
    self._labels = self._new_label[np.asarray(labels, int)[self.positions]]

  def __len__(self) -> int:
    return len(self.positions)

  def __getitem__(self, i):
    return self._renumbered(self.source[int(self.positions[i])])

  def __getitems__(self, positions) -> list:
    return [self._renumbered(r) for r in
            label_fractions.read_many(self.source, self.positions[np.asarray(positions, int)])]

  def all_labels(self) -> np.ndarray:
    return self._labels

  def _renumbered(self, record: dict) -> dict:
    return dict(record, label=int(self._new_label[int(record["label"])]))


def apply(source, indices: tuple[int, ...]):
  """`source` restricted to the classes `indices` (unchanged when empty)."""
  return ClassSubset(source, indices) if indices else source
