"""Few-shot ridge, the padded, sharded batch map, and when evaluators run."""

import types

import jax
import ml_collections
import numpy as np
import pytest

from mll_jax import evaluators, sharding
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


def _due_steps(total_steps: int, **settings) -> list[int]:
  evaluator = types.SimpleNamespace(**{"log_steps": 0, "log_points": 0, **settings})
  return [s for s in range(total_steps + 1) if evaluators.due(evaluator, s, total_steps)]


def test_log_points_spread_evaluations_over_any_run_length():
  assert _due_steps(100, log_points=4) == [0, 25, 50, 75, 100]
  assert _due_steps(103, log_points=4) == [0, 25, 50, 75, 100, 103]
  assert _due_steps(3, log_points=10) == [0, 1, 2, 3]  # never every 0 steps
  assert _due_steps(100, log_steps=40) == [0, 40, 80, 100]  # log_steps as before


@pytest.mark.parametrize("points", [-1, 2.5])
def test_bad_log_points_get_one_message_naming_the_key(points):
  evals = ml_collections.ConfigDict({"validation": {"kind": "classification", "log_steps": 0,
                                                    "log_points": points}})
  with pytest.raises(ValueError, match=r"config.evals.validation.log_points=.* whole number"):
    evaluators.build_all(evals, context=None)
