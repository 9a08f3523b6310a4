"""Exact GELU, x * Phi(x), computed the way PyTorch's `nn.GELU()` computes it.

`jax.nn.gelu(x, approximate=False)` writes Phi(x) as `erfc(-x / sqrt 2) / 2`. On XLA's CPU
backend `erfc` lowers to an exponential, two rational polynomials and selects, and its fusions
(with their gradients') were the largest elementwise work in the MAE `tiny` train step's
profile. PyTorch writes Phi(x) as `(1 + erf(x / sqrt 2)) / 2`, and XLA's `erf` is one clamped
rational polynomial: the same function (they differ by under 1e-6 in float32), cheaper to
evaluate, and the whole CPU train step runs faster with it (measured by
`benchmarks/diagnostics/gelu_step.py` into `benchmarks/results/gelu.md`).

The custom JVP gives the derivative in closed form, Phi(x) + x * phi(x), so the backward pass
evaluates one `erf` and one `exp` per element instead of differentiating through the
polynomial's selects.
"""

import jax
import jax.numpy as jnp
import numpy as np

_SQRT_HALF = float(np.sqrt(0.5))
_INV_SQRT_2PI = float(1.0 / np.sqrt(2.0 * np.pi))


def _normal_cdf(x: jax.Array) -> jax.Array:
  return 0.5 * (1.0 + jax.lax.erf(x * jnp.asarray(_SQRT_HALF, x.dtype)))


@jax.custom_jvp
def gelu(x: jax.Array) -> jax.Array:
  """Exact (erf) GELU of `x`, elementwise, in `x`'s dtype; equal to
  `jax.nn.gelu(x, approximate=False)` to within float rounding and cheaper on CPU."""
  return x * _normal_cdf(x)


@gelu.defjvp
def _gelu_jvp(primals, tangents):
  (x,), (dx,) = primals, tangents
  cdf = _normal_cdf(x)
  pdf = jnp.exp(-0.5 * x * x) * jnp.asarray(_INV_SQRT_2PI, x.dtype)
  return x * cdf, (cdf + x * pdf) * dx
