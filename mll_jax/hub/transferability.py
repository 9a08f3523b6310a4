"""Transferability estimates, jitted, for ranking hub backbones when a user has a few labels
(survey "Which Model to Transfer?"; references.md). Higher is better for all four.

- `logme(features, labels)`: the mean (over classes) log marginal evidence per example of a
  Bayesian linear model on the features, with the evidence-maximising fixed point of thuml/LogME.
- `leep(probs, labels)`: log expected empirical prediction from the source model's softmax.
- `nce(probs, labels)`: negative conditional entropy of the labels given the source model's
  hard predictions.
- `hscore(features, labels, shrinkage)`: tr(cov(F)^-1 cov(E[F|y])), optionally with the
  covariance shrunk towards a scaled identity.
"""

import functools

import jax
import jax.numpy as jnp

LOGME_ITERATIONS = 11  # thuml/LogME's cap; it stops earlier when lambda changes < 1%


def _class_evidence(y, f, v, s, tmp_basis, n, d):
  """LogME's fixed point for one target column `y` (f: [N, D] features; v, s: eigenvectors
  and eigenvalues of f^T f), as thuml/LogME's `each_evidence`: at most 11 updates, stopping
  once lambda = alpha / beta changes by less than 1%; the evidence uses the last update's
  residual terms. The early stop is a mask, so the loop has a fixed length under jit."""
  tmp = tmp_basis @ y  # v^T f^T y
  eps = 1e-5

  def body(_, carry):
    alpha, beta, lam, done, alpha_de, beta_de = carry
    gamma = jnp.sum(s / (s + lam))
    m = v @ (tmp * beta / (alpha + beta * s))
    new_alpha_de = jnp.sum(m * m)
    new_alpha = gamma / (new_alpha_de + eps)
    new_beta_de = jnp.sum((y - f @ m) ** 2)
    new_beta = (n - gamma) / (new_beta_de + eps)
    new_lam = new_alpha / new_beta
    converged = jnp.abs(new_lam - lam) / lam < 0.01
    keep = lambda old, new: jnp.where(done, old, new)
    return (keep(alpha, new_alpha), keep(beta, new_beta),
            jnp.where(done | converged, lam, new_lam), done | converged,
            keep(alpha_de, new_alpha_de), keep(beta_de, new_beta_de))

  one, zero = jnp.asarray(1.0, f.dtype), jnp.asarray(0.0, f.dtype)
  alpha, beta, _, _, alpha_de, beta_de = jax.lax.fori_loop(
      0, LOGME_ITERATIONS, body, (one, one, one, jnp.asarray(False), zero, zero))
  evidence = (d / 2.0 * jnp.log(alpha) + n / 2.0 * jnp.log(beta)
              - 0.5 * jnp.sum(jnp.log(alpha + beta * s)) - beta / 2.0 * beta_de
              - alpha / 2.0 * alpha_de - n / 2.0 * jnp.log(2 * jnp.pi))
  return evidence / n


@functools.partial(jax.jit, static_argnames=("num_classes",))
def logme(features: jax.Array, labels: jax.Array, num_classes: int) -> jax.Array:
  """LogME score of `features [N, D]` for integer `labels [N]`."""
  f = features.astype(jnp.float32)
  n, d = f.shape
  s, v = jnp.linalg.eigh(f.T @ f)  # f^T f = v diag(s) v^T (thuml uses its SVD: the same here)
  s = jnp.maximum(s, 0.0)
  tmp_basis = v.T @ f.T
  onehot = jax.nn.one_hot(labels, num_classes, dtype=f.dtype)
  evidences = jax.vmap(lambda y: _class_evidence(y, f, v, s, tmp_basis, n, d))(onehot.T)
  return evidences.mean()


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
