"""CHCO's jitted FISTA against an independent interior-point solve (cvxpy + Clarabel, the softmax
cross-entropy as exponential cones, float64): the objective of the returned weights is within
1e-4 (relative) of the optimum on random instances and on the hard cases: all-zero costs,
duplicated models, one candidate model, a huge lambda, a class covered by one model only, the
budget refit, and X @ 1 = 0 (which fooled a power iteration started at the all-ones vector)."""

import cvxpy as cp
import numpy as np
import pytest

from mll_jax.hub import chco

LAM, MU = 0.05, 1e-4
RELATIVE = 1e-4


def _objective64(problem, w, b, lam, mu):
  """The CHCO objective, written out in float64."""
  x = problem.x.astype(np.float64)
  z = x @ w + b
  z = z - z.max(1, keepdims=True)
  log_probs = z - np.log(np.exp(z).sum(1, keepdims=True))
  ce = -log_probs[np.arange(len(problem.y)), problem.y].mean()
  norms = [np.linalg.norm(w[problem.groups == m]) for m in range(len(problem.kappa))]
  return ce + lam * float(np.dot(problem.kappa, norms)) + mu * float(np.sum(w * w))


def _interior_point_optimum(problem, lam, mu, heads=None):
  """min over W, b (only `heads` non-zero, when given) of the CHCO objective, by Clarabel."""
  x = problem.x.astype(np.float64)
  n, p = x.shape
  k = problem.num_classes
  w, b = cp.Variable((p, k)), cp.Variable(k)
  logits = x @ w + np.ones((n, 1)) @ cp.reshape(b, (1, k), order="C")
  onehot = np.eye(k)[problem.y]
  ce = (cp.sum(cp.log_sum_exp(logits, axis=1)) - cp.sum(cp.multiply(onehot, logits))) / n
  penalty = sum(float(problem.kappa[m]) * cp.norm(w[np.flatnonzero(problem.groups == m), :],
                                                  "fro")
                for m in range(len(problem.kappa)) if np.any(problem.groups == m))
  constraints = [] if heads is None else [w[np.flatnonzero(~heads), :] == 0]
  solved = cp.Problem(cp.Minimize(ce + lam * penalty + mu * cp.sum_squares(w)), constraints)
  solved.solve(solver=cp.CLARABEL, tol_gap_abs=1e-9, tol_gap_rel=1e-9, tol_feas=1e-9)
  assert solved.status == cp.OPTIMAL, solved.status
  return solved.value


def _responses(seed, n_per_class=20, k=3, models=4, heads_per_model=3, head_classes=None):
  """Like a hub's labels: each model's heads give log-softmax responses (all negative), and
  each head responds to one target class (`head_classes [models, heads]`, -1 for none;
  random when not given)."""
  rng = np.random.default_rng(seed)
  y = np.repeat(np.arange(k), n_per_class).astype(np.int32)
  if head_classes is None:
    head_classes = rng.integers(0, k, (models, heads_per_model))
  columns = []
  for m in range(models):
    logits = rng.normal(0.0, 2.0, (len(y), heads_per_model))
    for h, c in enumerate(head_classes[m]):
      if c >= 0:
        logits[:, h] += 4.0 * rng.uniform(0.3, 1.0) * (y == c)
    columns.append(logits - np.log(np.exp(logits).sum(1, keepdims=True)))
  groups = np.repeat(np.arange(models), heads_per_model).astype(np.int32)
  return chco.Problem(np.concatenate(columns, 1).astype(np.float32), y, groups,
                      rng.uniform(0.5, 2.0, models).astype(np.float32), k)


def _with(problem, **changes):
  fields = dict(x=problem.x, y=problem.y, groups=problem.groups, kappa=problem.kappa,
                num_classes=problem.num_classes)
  return chco.Problem(**{**fields, **changes})


def _duplicated(problem):
  """Every model twice: the same heads in two groups (the optimum splits weight between them)."""
  m = len(problem.kappa)
  return _with(problem, x=np.concatenate([problem.x, problem.x], 1),
               groups=np.concatenate([problem.groups, problem.groups + m]).astype(np.int32),
               kappa=np.concatenate([problem.kappa, problem.kappa]))


def _x_ones_zero(seed=14):
  """Heads in +/- pairs, so X @ 1 = 0 exactly."""
  problem = _responses(seed, models=2, heads_per_model=2)
  half = problem.x[:, :2]
  return _with(problem, x=np.concatenate([half, -half], 1))


def _no_costs(problem):
  return _with(problem, kappa=np.zeros(len(problem.kappa), np.float32))


CASES = {
    **{f"random_{seed}": (lambda seed=seed: _responses(seed, k=2 + seed % 3, models=3 + seed % 4),
                          LAM) for seed in range(6)},
    "zero_costs": (lambda: _no_costs(_responses(10)), LAM),
    "duplicated_models": (lambda: _duplicated(_responses(11)), LAM),
    "zero_costs_duplicated": (lambda: _duplicated(_no_costs(_responses(12))), LAM),
    "one_candidate_model": (lambda: _responses(4, models=1), LAM),
    "huge_lambda": (lambda: _responses(5), 1e3),
    "class_covered_by_one_model": (lambda: _responses(
        7, head_classes=np.array([[0, 1, -1], [1, 0, 0], [0, -1, 1], [2, -1, -1]])), LAM),
    "x_times_ones_is_zero": (_x_ones_zero, LAM),
}


@pytest.mark.parametrize("case", CASES)
def test_objective_within_1e4_of_an_interior_point_solve(case):
  make, lam = CASES[case]
  problem = make()
  out = chco.solve(problem, lam=lam, mu=MU)
  optimum = _interior_point_optimum(problem, lam, MU)
  achieved = _objective64(problem, out["w"].astype(np.float64), out["b"].astype(np.float64),
                          lam, MU)
  assert out["converged"] and out["iterations"] > 0
  assert achieved <= optimum + RELATIVE * abs(optimum), (achieved, optimum)
  assert out["objective"] == pytest.approx(achieved, rel=1e-5)  # it reports what it returns


def test_the_budget_refit_reaches_its_optimum():
  problem = _responses(13, models=5)
  out = chco.solve(problem, lam=0.0, mu=MU, budget=2)
  assert out["selected"].sum() == 2 and out["converged"]
  kept_heads = out["selected"][problem.groups]
  optimum = _interior_point_optimum(problem, 0.0, MU, heads=kept_heads)
  achieved = _objective64(problem, out["w"].astype(np.float64), out["b"].astype(np.float64),
                          0.0, MU)
  assert achieved <= optimum + RELATIVE * abs(optimum), (achieved, optimum)


@pytest.mark.slow
def test_batched_solves_stop_on_their_own_and_report_it():
  problems = [make() for make, _ in list(CASES.values())[:10]]
  batch = chco.solve_batch(problems, lam=LAM, mu=MU)
  alone = [chco.solve(p, lam=LAM, mu=MU) for p in problems]
  assert all(b["converged"] for b in batch)
  # vmapped arithmetic rounds a little differently, and a restart decided on a last bit moves
  # the stopping step (up to 8% seen); each task still stops at its own step.
  np.testing.assert_allclose([b["iterations"] for b in batch],
                             [a["iterations"] for a in alone], rtol=0.2)
  np.testing.assert_allclose([b["objective"] for b in batch],
                             [a["objective"] for a in alone], rtol=1e-5)
  assert len({b["iterations"] for b in batch}) > 5
  # A cap too small to converge is reported, not hidden.
  capped = chco.solve(problems[0], lam=LAM, mu=MU, max_steps=3)
  assert capped["iterations"] == 3 and not capped["converged"]
