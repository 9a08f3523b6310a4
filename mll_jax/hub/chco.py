"""CHCO, Classification Head Combination Optimization (shared/design/mll.md, section 4).

Given the cached responses `X [N, P]` of P candidate heads on the pool images of a task's K
target concepts (labels `y [N]`), the group of each head (its model, cost `kappa`), learn
`W [P, K]`, `b [K]`:

    minimise  mean_i CE(softmax(X_i W + b), y_i)
              + lam * sum_m kappa_m * ||W[heads of m, :]||_2  +  mu * ||W||_F^2

by FISTA (accelerated proximal gradient with adaptive restart; the prox of the group penalty
is block soft-thresholding, the step 1 / L from an exact bound on L) under `jax.jit` with a
`lax.while_loop` that stops when the proximal-gradient residual is below a tolerance. Problems
are padded to shape buckets (`Problem.pad`), so `solve_batch` can `vmap` many tasks through one
compiled function, each stopping on its own. Selected models: groups whose weights are not all
zero. Every solution reports its iterations and whether it converged.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class Problem:
  """One task's CHCO instance (numpy, unpadded unless `pad` made it so).

  `x [N, P]` responses, `y [N]` target indices, `groups [P]` the model index of each head,
  `kappa [M]` the models' costs, `sample_mask [N]`, `head_mask [P]`, `class_mask [K]`
  (0 on padding), `num_classes` K."""
  x: np.ndarray
  y: np.ndarray
  groups: np.ndarray
  kappa: np.ndarray
  num_classes: int
  sample_mask: np.ndarray | None = None
  head_mask: np.ndarray | None = None
  class_mask: np.ndarray | None = None

  def masks(self):
    n, p = self.x.shape
    return (np.ones(n, np.float32) if self.sample_mask is None else self.sample_mask,
            np.ones(p, np.float32) if self.head_mask is None else self.head_mask,
            np.ones(self.num_classes, np.float32) if self.class_mask is None else self.class_mask)

  def pad(self, n: int, p: int, k: int, m: int) -> "Problem":
    """Zero-padded to N=n images, P=p heads, K=k classes, M=m models (masks mark padding).
    Padded heads belong to a padded model when there is one, else to model 0 with zero
    columns, so they never change the objective."""
    n0, p0 = self.x.shape
    k0, m0 = self.num_classes, len(self.kappa)
    if n < n0 or p < p0 or k < k0 or m < m0:
      raise ValueError(f"Bucket ({n}, {p}, {k}, {m}) is smaller than the problem "
                       f"({n0}, {p0}, {k0}, {m0}).")
    sample, head, cls = self.masks()
    x = np.zeros((n, p), np.float32)
    x[:n0, :p0] = self.x
    groups = np.full(p, m0 if m > m0 else 0, np.int32)
    groups[:p0] = self.groups
    kappa = np.ones(m, np.float32)
    kappa[:m0] = self.kappa
    return Problem(x, np.pad(self.y, (0, n - n0)).astype(np.int32), groups, kappa, k,
                   np.pad(sample, (0, n - n0)), np.pad(head, (0, p - p0)),
                   np.pad(cls, (0, k - k0)))


def _bucket(value: int, minimum: int = 8) -> int:
  """The next power of two (at least `minimum`): few distinct shapes, so few compilations."""
  return max(minimum, 1 << max(0, int(value) - 1).bit_length())


def bucket_shape(problems: list[Problem]) -> tuple[int, int, int, int]:
  """(N, P, K, M) padded sizes that fit every problem."""
  n = _bucket(max(p.x.shape[0] for p in problems), 64)
  heads = _bucket(max(p.x.shape[1] for p in problems))
  k = _bucket(max(p.num_classes for p in problems), 4)
  m = _bucket(max(len(p.kappa) for p in problems) + 1, 4)  # + 1: a padding model
  return n, heads, k, m


def _arrays(problem: Problem) -> dict:
  sample, head, cls = problem.masks()
  return {"x": jnp.asarray(problem.x, jnp.float32), "y": jnp.asarray(problem.y, jnp.int32),
          "groups": jnp.asarray(problem.groups, jnp.int32),
          "kappa": jnp.asarray(problem.kappa, jnp.float32),
          "sample_mask": jnp.asarray(sample, jnp.float32),
          "head_mask": jnp.asarray(head, jnp.float32),
          "class_mask": jnp.asarray(cls, jnp.float32)}


def _smooth_loss(w, b, a, mu):
  """Mean masked cross-entropy + mu ||W||^2 (the differentiable part)."""
  logits = a["x"] @ w + b
  logits = jnp.where(a["class_mask"] > 0, logits, -1e9)
  ce = -jnp.take_along_axis(jax.nn.log_softmax(logits), a["y"][:, None], axis=1)[:, 0]
  return (ce * a["sample_mask"]).sum() / jnp.maximum(a["sample_mask"].sum(), 1.0) + \
      mu * jnp.sum(w * w)


def _group_norms(w, groups, num_groups):
  return jnp.sqrt(jax.ops.segment_sum(jnp.sum(w * w, axis=1), groups, num_groups))


def objective(w, b, a, lam, mu):
  """The full CHCO objective (smooth part + cost-weighted group lasso)."""
  norms = _group_norms(w, a["groups"], a["kappa"].shape[0])
  return _smooth_loss(w, b, a, mu) + lam * jnp.sum(a["kappa"] * norms)


def _lipschitz(a, mu):
  """The gradient's Lipschitz constant, bounded safely: the softmax CE's Hessian is at most 1/2
  in the logits, so L <= lambda_max(A^T A) / (2 n) + 2 mu for A = [X, 1] over the real rows.
  lambda_max comes from an eigendecomposition of the small (P + 1)^2 matrix A^T A, not a power
  iteration, whose start vector X @ 1 = 0 (X = [a, -a]) can make it far too small (FISTA
  then diverges); the factor covers float32 rounding."""
  mask = a["sample_mask"][:, None]
  augmented = jnp.concatenate([a["x"], jnp.ones_like(a["x"][:, :1])], axis=1) * mask
  n = jnp.maximum(a["sample_mask"].sum(), 1.0)
  top = jnp.linalg.eigvalsh(augmented.T @ augmented)[-1]
  return top / (2 * n) * 1.001 + 2 * mu


def _fista(a, lam, mu, allowed, tol, max_steps):
  """FISTA with adaptive restart on W, b, the heads outside `allowed` (a [P] 0/1 mask) held
  at zero, until the proximal-gradient residual ||(z - prox(z - s grad f(z))) / s|| (zero
  exactly at the optimum) falls below `tol`, or `max_steps`. A `lax.while_loop`, so under
  `vmap` each task stops on its own (finished tasks are held while others go on).

  Restart (O'Donoghue & Candes 2015, gradient scheme): when the step goes against the
  momentum, the momentum is reset; it keeps FISTA fast on the ill-conditioned problems that
  duplicated models make. Returns (w, b, steps taken, converged)."""
  p, k = a["x"].shape[1], a["class_mask"].shape[0]
  step = 1.0 / _lipschitz(a, mu)
  num_groups = a["kappa"].shape[0]
  keep = (a["head_mask"] * allowed)[:, None] * a["class_mask"][None, :]
  grad = jax.grad(_smooth_loss, argnums=(0, 1))

  def prox(w):
    norms = _group_norms(w, a["groups"], num_groups)
    shrink = jnp.maximum(0.0, 1.0 - step * lam * a["kappa"] / jnp.maximum(norms, 1e-12))
    return w * shrink[a["groups"]][:, None] * keep

  def cond(carry):
    *_, iteration, residual = carry
    return (residual > tol) & (iteration < max_steps)

  def body(carry):
    w, b, w_prev, b_prev, t, iteration, _ = carry
    t_next = (1 + jnp.sqrt(1 + 4 * t * t)) / 2
    momentum = (t - 1) / t_next
    zw, zb = w + momentum * (w - w_prev), b + momentum * (b - b_prev)
    gw, gb = grad(zw, zb, a, mu)
    w_new = prox(zw - step * gw)
    b_new = (zb - step * gb) * a["class_mask"]
    residual = jnp.sqrt(jnp.sum((zw - w_new) ** 2) + jnp.sum((zb - b_new) ** 2)) / step
    against = jnp.sum((zw - w_new) * (w_new - w)) + jnp.sum((zb - b_new) * (b_new - b)) > 0
    return w_new, b_new, w, b, jnp.where(against, 1.0, t_next), iteration + 1, residual

  w0, b0 = jnp.zeros((p, k)), jnp.zeros(k)
  w, b, _, _, _, iterations, residual = jax.lax.while_loop(
      cond, body, (w0, b0, w0, b0, jnp.asarray(1.0), jnp.asarray(0), jnp.asarray(jnp.inf)))
  return w, b, iterations, residual <= tol


def _solve_one(a, lam, mu, tol, max_steps, budget):
  """Solve; with a model budget, keep the `budget` groups of largest norm and refit them
  without the group penalty (a debiasing refit, as in relaxed group lasso).

  FISTA runs on centred responses, X - 1 mean(X), an exactly equivalent problem (the bias
  absorbs the shift: b = b_c - mean(X) W, and the penalties do not involve b). Responses are
  log-probabilities, all negative, so uncentred columns are nearly parallel to the bias
  column: centring cut the steps 5x on such a problem and reached its optimum where float32
  FISTA on the raw responses stalled 3e-4 (relative) above it."""
  sample = a["sample_mask"][:, None]
  mean = (a["x"] * sample).sum(0) / jnp.maximum(a["sample_mask"].sum(), 1.0)
  centred = dict(a, x=(a["x"] - mean) * sample)
  w, b, iterations, converged = _fista(centred, lam, mu, jnp.ones(a["x"].shape[1]), tol,
                                       max_steps)
  num_groups = a["kappa"].shape[0]
  if budget is not None:
    norms = _group_norms(w, a["groups"], num_groups)
    rank = jnp.argsort(jnp.argsort(-norms))
    kept_groups = (rank < budget) & (norms > 0)
    w, b, refit_iterations, refit_converged = _fista(
        centred, 0.0, mu, kept_groups[a["groups"]].astype(jnp.float32), tol, max_steps)
    iterations, converged = iterations + refit_iterations, converged & refit_converged
    lam_used = 0.0
  else:
    lam_used = lam
  b = (b - mean @ w) * a["class_mask"]
  norms = _group_norms(w, a["groups"], num_groups)
  return {"w": w, "b": b, "selected": norms > 0, "group_norms": norms,
          "objective": objective(w, b, a, lam_used, mu),
          "penalised_objective": objective(w, b, a, lam, mu),
          "iterations": iterations, "converged": converged}


@functools.partial(jax.jit, static_argnames=("max_steps", "budget"))
def _solve_jit(a, lam, mu, tol, max_steps, budget):
  return _solve_one(a, lam, mu, tol, max_steps, budget)


@functools.partial(jax.jit, static_argnames=("max_steps", "budget"))
def _solve_batch_jit(a, lam, mu, tol, max_steps, budget):
  return jax.vmap(lambda arrays: _solve_one(arrays, lam, mu, tol, max_steps, budget))(a)


TOLERANCE = 1e-6    # on the proximal-gradient residual: 1e-5 left a near-separable task 1.3e-4 above its optimum
MAX_STEPS = 20_000  # reached only by badly conditioned problems; reported as not converged


def solve(problem: Problem, lam: float = 1e-2, mu: float = 1e-4, tol: float = TOLERANCE,
          max_steps: int = MAX_STEPS, budget: int | None = None) -> dict:
  """One task, padded to its bucket (so tasks of similar size share a compilation). Returns
  numpy arrays: `w [P, K]`, `b [K]`, `selected [M]` models, `group_norms`, `objective` (of the
  returned solution: with lam = 0 after a budget refit), `penalised_objective`, and how the
  solve went: `iterations` (FISTA steps, both solves with a budget) and `converged` (the
  residual reached `tol` before `max_steps`)."""
  n, p, k, m = bucket_shape([problem])
  out = _solve_jit(_arrays(problem.pad(n, p, k, m)), jnp.float32(lam), jnp.float32(mu),
                   jnp.float32(tol), max_steps, budget)
  return _unpad(jax.device_get(out), problem)


def solve_batch(problems: list[Problem], lam: float = 1e-2, mu: float = 1e-4,
                tol: float = TOLERANCE, max_steps: int = MAX_STEPS,
                budget: int | None = None) -> list[dict]:
  """Many tasks at once: grouped by their own shape bucket, each group padded to it and solved
  by one vmapped, jitted call (a compilation per bucket, reused by later tasks); each task
  stops at its own convergence.

  Grouping, rather than padding every task to the largest, keeps the padded work of a batch
  equal to solving its tasks one at a time.
  """
  groups: dict[tuple, list[int]] = {}
  for i, problem in enumerate(problems):
    groups.setdefault(bucket_shape([problem]), []).append(i)
  results: list[dict | None] = [None] * len(problems)
  for (n, p, k, m), members in groups.items():
    arrays = [_arrays(problems[i].pad(n, p, k, m)) for i in members]
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *arrays)
    out = jax.device_get(_solve_batch_jit(stacked, jnp.float32(lam), jnp.float32(mu),
                                          jnp.float32(tol), max_steps, budget))
    for j, i in enumerate(members):
      results[i] = _unpad(jax.tree.map(lambda x, j=j: x[j], out), problems[i])
  return results


def _unpad(out: dict, problem: Problem) -> dict:
  p, k, m = problem.x.shape[1], problem.num_classes, len(problem.kappa)
  return {"w": np.asarray(out["w"])[:p, :k], "b": np.asarray(out["b"])[:k],
          "selected": np.asarray(out["selected"])[:m],
          "group_norms": np.asarray(out["group_norms"])[:m],
          "objective": float(out["objective"]),
          "penalised_objective": float(out["penalised_objective"]),
          "iterations": int(out["iterations"]), "converged": bool(out["converged"])}


def objective_value(problem: Problem, w: np.ndarray, b: np.ndarray, lam: float,
                    mu: float) -> float:
  """The CHCO objective of given weights (for checks and reference solvers)."""
  return float(objective(jnp.asarray(w, jnp.float32), jnp.asarray(b, jnp.float32),
                         _arrays(problem), lam, mu))
