"""CHCO: the jitted FISTA solver against brute force over model subsets; padding and vmap change
nothing; the budget and lambda behave. Optimality against an independent interior-point solver
is in test_chco_optimum.py."""

import itertools

import numpy as np
import pytest

from mll_jax.hub import chco

LAM, MU = 0.05, 1e-4
TOLERANCE = 1e-4  # objective tolerance stated for both checks


def _problem(seed=0, n_per_class=20, k=3, models=4, heads_per_model=2):
  """Heads 0..k-1 carry signal for classes 0..k-1 (at different strengths); the rest noise."""
  rng = np.random.default_rng(seed)
  y = np.repeat(np.arange(k), n_per_class)
  p = models * heads_per_model
  x = rng.normal(size=(len(y), p)).astype(np.float32)
  for c in range(k):
    x[:, c] += (2.0 - 0.3 * c) * (y == c)
  groups = np.repeat(np.arange(models), heads_per_model).astype(np.int32)
  kappa = rng.uniform(0.5, 2.0, models).astype(np.float32)
  return chco.Problem(x, y.astype(np.int32), groups, kappa, k)


def _restricted(problem, models):
  """The problem with only the heads of `models` (the others forced to zero)."""
  keep = np.isin(problem.groups, models)
  remap = {m: i for i, m in enumerate(models)}
  return chco.Problem(problem.x[:, keep], problem.y,
                      np.array([remap[g] for g in problem.groups[keep]], np.int32),
                      problem.kappa[list(models)], problem.num_classes)


def test_no_model_subset_beats_the_solver():
  problem = _problem(seed=1)
  out = chco.solve(problem, lam=LAM, mu=MU)
  models = range(len(problem.kappa))
  for size in range(1, len(problem.kappa) + 1):
    for subset in itertools.combinations(models, size):
      best_on_subset = chco.solve(_restricted(problem, subset), lam=LAM, mu=MU)
      assert out["objective"] <= best_on_subset["objective"] + TOLERANCE, subset


@pytest.mark.slow
def test_batched_padded_solves_equal_single_solves():
  problems = [_problem(seed=s, n_per_class=10 + 5 * s, k=2 + s % 2, models=3 + s % 3)
              for s in range(5)]
  batch = chco.solve_batch(problems, lam=LAM, mu=MU)
  for problem, got in zip(problems, batch):
    alone = chco.solve(problem, lam=LAM, mu=MU)
    assert got["w"].shape == (problem.x.shape[1], problem.num_classes)
    assert got["objective"] == pytest.approx(alone["objective"], abs=1e-5)
    np.testing.assert_array_equal(got["selected"], alone["selected"])
    # Padding changes nothing: the unpadded objective of the returned weights is the same.
    assert chco.objective_value(problem, got["w"], got["b"], LAM, MU) == \
        pytest.approx(got["objective"], abs=1e-5)


def test_larger_lambda_selects_fewer_models_and_budget_caps_them():
  problem = _problem(seed=2, models=6)
  counts = [int(chco.solve(problem, lam=lam)["selected"].sum())
            for lam in (0.0, 0.01, 0.05, 0.2, 1.0)]
  assert counts == sorted(counts, reverse=True) and counts[0] == 6 and counts[-1] < 6
  capped = chco.solve(problem, lam=0.0, budget=2)
  assert capped["selected"].sum() == 2
  # The kept models are the ones carrying the signal (heads 0-2 live in models 0 and 1).
  assert set(np.flatnonzero(capped["selected"])) <= {0, 1}


def test_bucket_shapes_are_shared_by_similar_tasks():
  small, larger = _problem(n_per_class=10), _problem(n_per_class=12)
  assert chco.bucket_shape([small]) == chco.bucket_shape([larger])
  with pytest.raises(ValueError, match="smaller than the problem"):
    small.pad(8, 8, 4, 4)
