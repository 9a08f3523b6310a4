"""Few-shot ridge and the padded, sharded batch map."""

import jax
import numpy as np
import pytest

from mll_jax import sharding
from mll_jax.evaluators import context, fewshot


def test_ridge_separates_separable_classes_and_not_random_labels():
  rng = np.random.default_rng(0)
  centres = rng.normal(size=(4, 16)) * 5
  y = np.repeat(np.arange(4), 10)
  x = centres[y] + rng.normal(size=(40, 16))
  y_test = np.repeat(np.arange(4), 50)
  x_test = centres[y_test] + rng.normal(size=(200, 16))
  good = float(fewshot.ridge_accuracy(x, y, x_test, y_test, 1.0, 4))
  shuffled = float(fewshot.ridge_accuracy(x, rng.permutation(y), x_test, y_test, 1.0, 4))
  assert good > 0.95
  assert shuffled < 0.6


def test_sample_shots_is_balanced_and_names_short_classes():
  labels = np.array([0] * 10 + [1] * 3)
  idx = fewshot.sample_shots(labels, 3, 2, seed=0)
  assert np.bincount(labels[idx]).tolist() == [3, 3]
  with pytest.raises(ValueError, match="5 shots of class 1"):
    fewshot.sample_shots(labels, 5, 2, seed=0)


def test_map_batches_pads_and_unpads():
  mesh = sharding.make_mesh([("data", -1)])
  images = np.arange(21 * 2, dtype=np.float32).reshape(21, 2)
  fn = jax.jit(lambda params, x: x.sum(-1) * params)
  out = context.map_batches(fn, 2.0, images, batch_size=8, mesh=mesh)
  np.testing.assert_allclose(out, images.sum(-1) * 2)
