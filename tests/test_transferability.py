"""Transferability metrics against independent plain-numpy implementations written here, and
a sanity check that informative features rank above noise."""

import numpy as np
import pytest
from scipy import optimize

from mll_jax.hub import transferability


def _numpy_logme(features, labels, num_classes):
  """thuml/LogME's rule written directly (no eigenbasis trick): A = alpha I + beta F^T F,
  m = beta A^-1 F^T y, gamma = sum beta s / (alpha + beta s), 11 updates or a 1% change."""
  f = features.astype(np.float64)
  n, d = f.shape
  ftf = f.T @ f
  s = np.linalg.eigvalsh(ftf)
  scores = []
  for k in range(num_classes):
    y = (labels == k).astype(np.float64)
    alpha, beta, lam = 1.0, 1.0, 1.0
    for _ in range(11):
      gamma = np.sum(s / (s + lam))
      m = beta * np.linalg.solve(alpha * np.eye(d) + beta * ftf, f.T @ y)
      alpha_de = m @ m
      alpha = gamma / (alpha_de + 1e-5)
      beta_de = np.sum((y - f @ m) ** 2)
      beta = (n - gamma) / (beta_de + 1e-5)
      new_lam = alpha / beta
      if abs(new_lam - lam) / lam < 0.01:
        break
      lam = new_lam
    _, logdet = np.linalg.slogdet(alpha * np.eye(d) + beta * ftf)
    evidence = (d / 2 * np.log(alpha) + n / 2 * np.log(beta) - 0.5 * logdet
                - beta / 2 * beta_de - alpha / 2 * alpha_de - n / 2 * np.log(2 * np.pi))
    scores.append(evidence / n)
  return np.mean(scores)


def _numpy_leep(probs, labels, k):
  joint = np.zeros((k, probs.shape[1]))
  for p, y in zip(probs, labels):
    joint[y] += p / len(labels)
  conditional = joint / joint.sum(0, keepdims=True)
  return np.mean([np.log(p @ conditional[y]) for p, y in zip(probs, labels)])


def _numpy_nce(probs, labels, k):
  z = probs.argmax(1)
  total = 0.0
  for zz in np.unique(z):
    pz = np.mean(z == zz)
    for y in range(k):
      pyz = np.mean((z == zz) & (labels == y))
      if pyz > 0:
        total += pyz * np.log(pyz / pz)
  return total


def _numpy_hscore(features, labels):
  f = features - features.mean(0)
  cov = np.cov(f, rowvar=False, bias=True)
  g = np.stack([f[labels == y].mean(0) for y in labels])
  cov_g = np.cov(g, rowvar=False, bias=True) + np.outer(g.mean(0), g.mean(0))
  return np.trace(np.linalg.pinv(cov) @ cov_g)


@pytest.fixture(scope="module")
def data():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 4, 300)
  informative = rng.normal(size=(300, 16)) + 1.5 * np.eye(16)[labels * 3]
  noise = rng.normal(size=(300, 16))
  logits = rng.normal(size=(300, 6)) + 2.0 * np.eye(6)[labels]
  probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
  return labels, informative.astype(np.float32), noise.astype(np.float32), probs


def _evidence64(f, y, log_alpha, log_beta):
  """log p(y | F, alpha, beta) / n in float64, from its definition (D x D matrices)."""
  n, d = f.shape
  alpha, beta = np.exp(log_alpha), np.exp(log_beta)
  a = alpha * np.eye(d) + beta * f.T @ f
  m = beta * np.linalg.solve(a, f.T @ y)
  _, logdet = np.linalg.slogdet(a)
  return (d / 2 * np.log(alpha) + n / 2 * np.log(beta) - 0.5 * logdet
          - beta / 2 * np.sum((y - f @ m) ** 2) - alpha / 2 * m @ m
          - n / 2 * np.log(2 * np.pi)) / n


def _numpy_logme_maximum(features, labels, num_classes):
  """Each class's evidence maximised over (log alpha, log beta) by Nelder-Mead, float64."""
  f = features.astype(np.float64)
  per_class = []
  for k in range(num_classes):
    y = (labels == k).astype(np.float64)
    best = optimize.minimize(lambda p: -_evidence64(f, y, p[0], p[1]), x0=[0.0, 0.0],
                             method="Nelder-Mead",
                             options=dict(xatol=1e-9, fatol=1e-12, maxiter=20000))
    per_class.append(-best.fun)
  return np.array(per_class)


def _features(kind, n, d, labels, rng):
  noise = rng.normal(size=(n, d))
  if kind == "informative":
    noise[np.arange(n), (labels * 3) % d] += 1.5
  return noise.astype(np.float32)


@pytest.mark.parametrize("kind,n,d", [("informative", 300, 16), ("noise", 300, 16),
                                      ("informative", 50, 300), ("noise", 50, 300),
                                      ("informative", 60, 60)])
def test_logme_is_the_evidence_maximum(kind, n, d):
  rng = np.random.default_rng(n + d)
  labels = rng.integers(0, 4, n)
  features = _features(kind, n, d, labels, rng)
  fit = transferability.logme_fit(features, labels, num_classes=4)
  expected = _numpy_logme_maximum(features, labels, 4)
  np.testing.assert_allclose(np.asarray(fit["evidence"]), expected, atol=1e-4)
  assert float(fit["score"]) == pytest.approx(expected.mean(), abs=1e-4)


def test_the_authors_rule_is_kept_and_falls_short_of_the_maximum_when_d_exceeds_n(data):
  labels, informative, noise, _ = data
  for features in (informative, noise):
    got = float(transferability.logme(features, labels, num_classes=4, rule="authors"))
    assert got == pytest.approx(_numpy_logme(features, labels, 4), abs=1e-4)
  # d > n: 11 updates stop far from the maximum (the reason the default iterates on).
  rng = np.random.default_rng(3)
  wide_labels = rng.integers(0, 4, 50)
  wide = rng.normal(size=(50, 300)).astype(np.float32)
  authors = float(transferability.logme(wide, wide_labels, 4, rule="authors"))
  assert authors == pytest.approx(_numpy_logme(wide, wide_labels, 4), abs=1e-3)
  assert float(transferability.logme(wide, wide_labels, 4)) > authors + 0.01
  with pytest.raises(ValueError, match="'converged' or 'authors'"):
    transferability.logme(wide, wide_labels, 4, rule="fast")


def test_informative_features_rank_above_noise(data):
  labels, informative, noise, _ = data
  assert transferability.logme(informative, labels, 4) > transferability.logme(noise, labels, 4)


def test_leep_nce_hscore_match_plain_numpy(data):
  labels, informative, noise, probs = data
  assert float(transferability.leep(probs, labels, 4)) == pytest.approx(
      _numpy_leep(probs, labels, 4), abs=1e-5)
  assert float(transferability.nce(probs, labels, 4)) == pytest.approx(
      _numpy_nce(probs, labels, 4), abs=1e-5)
  assert float(transferability.hscore(informative, labels, 4)) == pytest.approx(
      _numpy_hscore(informative.astype(np.float64), labels), rel=1e-3)
  assert transferability.hscore(informative, labels, 4) > transferability.hscore(noise, labels, 4)
  shrunk = float(transferability.hscore(informative, labels, 4, shrinkage=0.5))
  assert np.isfinite(shrunk) and shrunk != float(transferability.hscore(informative, labels, 4))
