"""Deterministic stratified train/test splits for data sets that ship without one."""

import numpy as np


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int = 0):
  """Returns `(train_indices, test_indices)`, the same `test_fraction` of every class in test."""
  rng = np.random.default_rng(seed)
  train, test = [], []
  for label in np.unique(labels):
    members = rng.permutation(np.flatnonzero(labels == label))
    n_test = int(round(len(members) * test_fraction))
    test.append(members[:n_test])
    train.append(members[n_test:])
  return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))
