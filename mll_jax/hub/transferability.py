"""Transferability estimates, jitted, for ranking hub backbones when a user has a few labels
(survey "Which Model to Transfer?"; references.md). Higher is better for all four.

- `logme(features, labels)`: the mean (over classes) log marginal evidence per example of a
  Bayesian linear model on the features, at the evidence maximum (MacKay's fixed point, as
  thuml/LogME, iterated to convergence; thuml's 11-update rule is `rule="authors"`).
- `leep(probs, labels)`: log expected empirical prediction from the source model's softmax.
- `nce(probs, labels)`: negative conditional entropy of the labels given the source model's
  hard predictions.
- `hscore(features, labels, shrinkage)`: tr(cov(F)^-1 cov(E[F|y])), optionally with the
  covariance shrunk towards a scaled identity.
"""

import functools

import jax
import jax.numpy as jnp

LOGME_AUTHORS_ITERATIONS = 11  # thuml/LogME's cap; it stops earlier when lambda changes < 1%
_AUTHORS_EPS = 1e-5            # thuml/LogME's guard in the alpha and beta updates


def _spectrum(features: jax.Array):
  """`u [N, k]`, `sigma [k]` (k = min(N, D)): F = U S V^T, sigma = s^2 the non-zero part of
  F^T F's spectrum. The other D - k eigenvalues are exactly 0 and are counted as such, not
  taken from a float32 eigendecomposition of F^T F (which gives them values up to ~1e-3)."""
  u, s, _ = jnp.linalg.svd(features, full_matrices=False)
  return u, s * s


def _posterior_terms(t, x2, outside, sigma):
  """At lambda = alpha / beta = t, in F's singular basis (x = U^T y, `outside` the part of
  |y|^2 outside F's column space): gamma = sum sigma / (sigma + t), |m|^2 of the posterior
  mean and the residual |y - F m|^2."""
  gamma = jnp.sum(sigma / (sigma + t))
  m2 = jnp.sum(sigma * x2 / (t + sigma) ** 2)
  res2 = jnp.sum(x2 * (t / (t + sigma)) ** 2) + outside
  return gamma, m2, res2


def _evidence(alpha, beta, m2, res2, sigma, n, d):
  """log p(y | F, alpha, beta) / n; the D - k null directions of F^T F add log(alpha) each."""
  k = sigma.shape[0]
  log_det = jnp.sum(jnp.log(alpha + beta * sigma)) + (d - k) * jnp.log(alpha)
  return (d / 2.0 * jnp.log(alpha) + n / 2.0 * jnp.log(beta) - 0.5 * log_det
          - beta / 2.0 * res2 - alpha / 2.0 * m2 - n / 2.0 * jnp.log(2 * jnp.pi)) / n


def _profile_evidence(log_t, x2, outside, sigma, n, d):
  """The evidence / n at lambda = exp(log_t) with beta at its optimum for that lambda,
  beta = n / (|y - F m|^2 + lambda |m|^2) (so alpha = lambda beta). Its stationary points in
  lambda are exactly MacKay's fixed points lambda = gamma |y - F m|^2 / ((n - gamma) |m|^2)."""
  t = jnp.exp(log_t)
  _, m2, res2 = _posterior_terms(t, x2, outside, sigma)
  beta = n / jnp.maximum(res2 + t * m2, 1e-30)
  return _evidence(t * beta, beta, m2, res2, sigma, n, d)


def _class_evidence_maximum(y, u, sigma, n, d, grid_points, refinements):
  """The maximum over (alpha, beta) of one class's evidence.

  Maximised over log lambda on the profile above: a grid spanning the spectrum and far beyond
  it on both sides finds the best point (so a second, lower local maximum cannot trap it, and
  a maximum at lambda -> infinity, "the features explain nothing", is reached in fixed work
  instead of by a fixed-point iteration that crawls there), then golden-section search refines
  it between the grid neighbours to a bracket of (0.618 ** refinements) * grid spacing.
  Returns (evidence / n, lambda, refinement steps, whether the maximum is interior); at an
  edge of the range the evidence is within float32 rounding of its limit.
  """
  x = u.T @ y
  x2 = x * x
  outside = jnp.sum((y - u @ x) ** 2)
  evidence_at = lambda log_t: _profile_evidence(log_t, x2, outside, sigma, n, d)
  top = jnp.log(jnp.maximum(sigma.max(), 1e-30))
  grid = jnp.linspace(top - 40.0, top + 30.0, grid_points)  # e^-40 .. e^30 around sigma_max
  best = jnp.argmax(jax.vmap(evidence_at)(grid))
  lo = grid[jnp.maximum(best - 1, 0)]
  hi = grid[jnp.minimum(best + 1, grid_points - 1)]
  ratio = (jnp.sqrt(5.0) - 1) / 2

  def golden(_, bracket):
    lo, hi = bracket
    left, right = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    keep_left = evidence_at(left) >= evidence_at(right)
    return jnp.where(keep_left, lo, left), jnp.where(keep_left, right, hi)

  lo, hi = jax.lax.fori_loop(0, refinements, golden, (lo, hi))
  log_t = (lo + hi) / 2
  interior = (best > 0) & (best < grid_points - 1)
  return evidence_at(log_t), jnp.exp(log_t), jnp.asarray(refinements), interior


def _class_evidence_authors(y, u, sigma, n, d):
  """thuml/LogME's `each_evidence`: at most 11 updates of alpha, beta (with its 1e-5 guards),
  stopping once lambda changes by less than 1%; the evidence uses the last update's residual
  terms. The early stop is a mask, so the loop has a fixed length under jit."""
  x = u.T @ y
  x2 = x * x
  outside = jnp.sum((y - u @ x) ** 2)

  def body(_, carry):
    alpha, beta, done, m2, res2, iterations = carry
    lam = alpha / beta
    _, new_m2, new_res2 = _posterior_terms(lam, x2, outside, sigma)
    gamma = jnp.sum(sigma / (sigma + lam))
    new_alpha = gamma / (new_m2 + _AUTHORS_EPS)
    new_beta = (n - gamma) / (new_res2 + _AUTHORS_EPS)
    stop = jnp.abs(new_alpha / new_beta - lam) / lam < 0.01
    keep = lambda old, new: jnp.where(done, old, new)
    return (keep(alpha, new_alpha), keep(beta, new_beta), done | stop, keep(m2, new_m2),
            keep(res2, new_res2), iterations + (~done))

  one, zero = jnp.asarray(1.0, u.dtype), jnp.asarray(0.0, u.dtype)
  alpha, beta, done, m2, res2, iterations = jax.lax.fori_loop(
      0, LOGME_AUTHORS_ITERATIONS, body, (one, one, jnp.asarray(False), zero, zero,
                                          jnp.asarray(0)))
  return _evidence(alpha, beta, m2, res2, sigma, n, d), alpha / beta, iterations, done


@functools.partial(jax.jit, static_argnames=("num_classes", "rule", "grid_points",
                                             "refinements"))
def logme_fit(features: jax.Array, labels: jax.Array, num_classes: int,
              rule: str = "converged", grid_points: int = 141,
              refinements: int = 40) -> dict:
  """LogME of `features [N, D]` for integer `labels [N]`, with what each class's fit did.

  `rule="converged"` (default) takes each class's evidence at its maximum over alpha and beta
  (see `_class_evidence_maximum`; log lambda to about 1e-9 with the defaults).
  `rule="authors"` is thuml/LogME's rule (11 updates at most, stop at a 1% change), for
  comparison with published numbers; its evidence is not maximised on hard inputs.
  Returns `score` (the mean over classes of log evidence / N), and per class `evidence`,
  `lam` (alpha / beta), `iterations` (refinement steps, or the authors' updates) and
  `converged` (an interior maximum; False when the evidence rises towards lambda -> 0 or
  infinity, where its value is the limit, or when the authors' rule ran out of updates).
  """
  if rule not in ("converged", "authors"):
    raise ValueError(f"LogME rule must be 'converged' or 'authors', got {rule!r}.")
  f = features.astype(jnp.float32)
  n, d = f.shape
  u, sigma = _spectrum(f)
  onehot = jax.nn.one_hot(labels, num_classes, dtype=f.dtype).T
  if rule == "converged":
    fit = lambda y: _class_evidence_maximum(y, u, sigma, n, d, grid_points, refinements)
  else:
    fit = lambda y: _class_evidence_authors(y, u, sigma, n, d)
  evidence, lam, iterations, converged = jax.vmap(fit)(onehot)
  return {"score": evidence.mean(), "evidence": evidence, "lam": lam,
          "iterations": iterations, "converged": converged}


def logme(features: jax.Array, labels: jax.Array, num_classes: int,
          rule: str = "converged") -> jax.Array:
  """LogME score of `features [N, D]` for integer `labels [N]` (see `logme_fit`)."""
  return logme_fit(features, labels, num_classes, rule=rule)["score"]


def _joint(probs, labels, num_classes):
  """Empirical joint P(y, z) from source probabilities (soft) over the target labels."""
  onehot = jax.nn.one_hot(labels, num_classes, dtype=probs.dtype)
  return onehot.T @ probs / probs.shape[0]  # [K, Z]


@functools.partial(jax.jit, static_argnames=("num_classes",))
def leep(probs: jax.Array, labels: jax.Array, num_classes: int) -> jax.Array:
  """LEEP of source-model probabilities `probs [N, Z]` for target `labels [N]`."""
  joint = _joint(probs, labels, num_classes)
  conditional = joint / jnp.maximum(joint.sum(0, keepdims=True), 1e-12)  # P(y | z)
  expected = probs @ conditional.T  # [N, K]
  return jnp.mean(jnp.log(jnp.take_along_axis(expected, labels[:, None], 1)[:, 0] + 1e-12))


@functools.partial(jax.jit, static_argnames=("num_classes",))
def nce(probs: jax.Array, labels: jax.Array, num_classes: int) -> jax.Array:
  """NCE: -H(Y | Z) with Z the source model's hard prediction."""
  hard = jax.nn.one_hot(probs.argmax(-1), probs.shape[1], dtype=jnp.float32)
  joint = _joint(hard, labels, num_classes)
  marginal = joint.sum(0, keepdims=True)
  conditional = joint / jnp.maximum(marginal, 1e-12)
  return jnp.sum(jnp.where(joint > 0, joint * jnp.log(jnp.maximum(conditional, 1e-12)), 0.0))


@functools.partial(jax.jit, static_argnames=("num_classes",))
def hscore(features: jax.Array, labels: jax.Array, num_classes: int,
           shrinkage: float = 0.0) -> jax.Array:
  """H-score; `shrinkage` in [0, 1] mixes cov(F) with tr(cov)/D * I (0: plain, pinv)."""
  f = features.astype(jnp.float32)
  f = f - f.mean(0)
  cov = f.T @ f / f.shape[0]
  d = f.shape[1]
  cov = (1 - shrinkage) * cov + shrinkage * jnp.trace(cov) / d * jnp.eye(d)
  onehot = jax.nn.one_hot(labels, num_classes, dtype=f.dtype)
  counts = jnp.maximum(onehot.sum(0), 1.0)
  class_means = (onehot.T @ f) / counts[:, None]          # E[F | y]
  g = class_means[labels]                                  # per example
  cov_g = g.T @ g / f.shape[0]
  return jnp.trace(jnp.linalg.pinv(cov, hermitian=True) @ cov_g)


METRICS = {"logme": logme, "leep": leep, "nce": nce, "hscore": hscore}
USES_FEATURES = {"logme": True, "hscore": True, "leep": False, "nce": False}
