"""CHCO, Classification Head Combination Optimization (shared/design/mll.md, section 4).

Given the cached responses `X [N, P]` of P candidate heads on the pool images of a task's K
target concepts (labels `y [N]`), the group of each head (its model, cost `kappa`), learn
`W [P, K]`, `b [K]`:

    minimise  mean_i CE(softmax(X_i W + b), y_i)
              + lam * sum_m kappa_m * ||W[heads of m, :]||_2  +  mu * ||W||_F^2

by FISTA (accelerated proximal gradient; the prox of the group penalty is block
soft-thresholding) for a fixed number of steps under `jax.jit` with `lax.fori_loop`. Problems
are padded to shape buckets (`Problem.pad`), so `solve_batch` can `vmap` many tasks through one
compiled function. Selected models: groups whose weights are not all zero.
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
  """A bound on the gradient's Lipschitz constant: the softmax CE's Hessian is at most 1/2 in
  the logits, so L <= (||X||_2^2 + 1) / (2 n) for [X, 1] and weights W, b; plus 2 mu."""
  x = a["x"] * a["sample_mask"][:, None]
  n = jnp.maximum(a["sample_mask"].sum(), 1.0)
  v = jnp.ones(x.shape[1]) / jnp.sqrt(x.shape[1])  # power iteration for ||X||_2^2
  for _ in range(30):
    v = x.T @ (x @ v)
    v = v / jnp.maximum(jnp.linalg.norm(v), 1e-12)
  sigma2 = jnp.linalg.norm(x @ v) ** 2
  return (sigma2 + n) / (2 * n) * 1.05 + 2 * mu  # 5% margin over the power-iteration estimate


def _fista(a, lam, mu, steps, allowed):
  """FISTA on W, b with the heads outside `allowed` (a [P] 0/1 mask) held at zero."""
  p, k = a["x"].shape[1], a["class_mask"].shape[0]
  step = 1.0 / _lipschitz(a, mu)
  num_groups = a["kappa"].shape[0]
  keep = (a["head_mask"] * allowed)[:, None] * a["class_mask"][None, :]
  grad = jax.grad(_smooth_loss, argnums=(0, 1))

  def prox(w):
    norms = _group_norms(w, a["groups"], num_groups)
    shrink = jnp.maximum(0.0, 1.0 - step * lam * a["kappa"] / jnp.maximum(norms, 1e-12))
    return w * shrink[a["groups"]][:, None] * keep

  def body(_, carry):
    w, b, w_prev, b_prev, t = carry
    t_next = (1 + jnp.sqrt(1 + 4 * t * t)) / 2
    momentum = (t - 1) / t_next
    zw, zb = w + momentum * (w - w_prev), b + momentum * (b - b_prev)
    gw, gb = grad(zw, zb, a, mu)
    w_new = prox(zw - step * gw)
    b_new = (zb - step * gb) * a["class_mask"]
    return w_new, b_new, w, b, t_next

  w0, b0 = jnp.zeros((p, k)), jnp.zeros(k)
  w, b, *_ = jax.lax.fori_loop(0, steps, body, (w0, b0, w0, b0, jnp.asarray(1.0)))
  return w, b


def _solve_one(a, lam, mu, steps, budget):
  """Solve; with a model budget, keep the `budget` groups of largest norm and refit them
  without the group penalty (a debiasing refit, as in relaxed group lasso)."""
  w, b = _fista(a, lam, mu, steps, jnp.ones(a["x"].shape[1]))
  num_groups = a["kappa"].shape[0]
  if budget is not None:
    norms = _group_norms(w, a["groups"], num_groups)
    rank = jnp.argsort(jnp.argsort(-norms))
    kept_groups = (rank < budget) & (norms > 0)
    w, b = _fista(a, 0.0, mu, steps, kept_groups[a["groups"]].astype(jnp.float32))
    lam_used = 0.0
  else:
    lam_used = lam
  norms = _group_norms(w, a["groups"], num_groups)
  return {"w": w, "b": b, "selected": norms > 0, "group_norms": norms,
          "objective": objective(w, b, a, lam_used, mu),
          "penalised_objective": objective(w, b, a, lam, mu)}


@functools.partial(jax.jit, static_argnames=("steps", "budget"))
def _solve_jit(a, lam, mu, steps, budget):
  return _solve_one(a, lam, mu, steps, budget)


@functools.partial(jax.jit, static_argnames=("steps", "budget"))
def _solve_batch_jit(a, lam, mu, steps, budget):
  return jax.vmap(lambda arrays: _solve_one(arrays, lam, mu, steps, budget))(a)


def solve(problem: Problem, lam: float = 1e-2, mu: float = 1e-4, steps: int = 500,
          budget: int | None = None) -> dict:
  """One task, padded to its bucket (so tasks of similar size share a compilation). Returns
  numpy arrays: `w [P, K]`, `b [K]`, `selected [M]` models, `group_norms`, `objective` (of the
  returned solution: with lam = 0 after a budget refit) and `penalised_objective`."""
  n, p, k, m = bucket_shape([problem])
  out = _solve_jit(_arrays(problem.pad(n, p, k, m)), jnp.float32(lam), jnp.float32(mu),
                   steps, budget)
  return _unpad(jax.device_get(out), problem)


def solve_batch(problems: list[Problem], lam: float = 1e-2, mu: float = 1e-4, steps: int = 500,
                budget: int | None = None) -> list[dict]:
  """Many tasks at once: grouped by their own shape bucket, each group padded to it and solved
  by one vmapped, jitted call (a compilation per bucket, reused by later tasks).

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
    out = jax.device_get(_solve_batch_jit(stacked, jnp.float32(lam), jnp.float32(mu), steps,
                                          budget))
    for j, i in enumerate(members):
      results[i] = _unpad(jax.tree.map(lambda x, j=j: x[j], out), problems[i])
  return results


def _unpad(out: dict, problem: Problem) -> dict:
  p, k, m = problem.x.shape[1], problem.num_classes, len(problem.kappa)
  return {"w": np.asarray(out["w"])[:p, :k], "b": np.asarray(out["b"])[:k],
          "selected": np.asarray(out["selected"])[:m],
          "group_norms": np.asarray(out["group_norms"])[:m],
          "objective": float(out["objective"]),
          "penalised_objective": float(out["penalised_objective"])}


def objective_value(problem: Problem, w: np.ndarray, b: np.ndarray, lam: float,
                    mu: float) -> float:
  """The CHCO objective of given weights (for checks and reference solvers)."""
  return float(objective(jnp.asarray(w, jnp.float32), jnp.asarray(b, jnp.float32),
                         _arrays(problem), lam, mu))
