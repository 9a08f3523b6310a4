"""The ViT's LayerNorm: `nnx.LayerNorm`'s parameters and function, with its row statistics
computed as matrix products and a closed-form backward pass.

Why not `nnx.LayerNorm` as it is: on XLA's CPU backend its row reductions over the
128-192 features of the MAE's tokens ran as slow reduction loops, and autodiff of its
`mean(x^2) - mean(x)^2` statistics adds more of them to the backward pass, at about twice
PyTorch's time. Written as PyTorch's kernel computes it (two-pass statistics; the backward
`dx = rstd * (g - mean(g) - xhat * mean(g * xhat))` with `g = dy * scale`), with every
per-row mean taken as a product with a constant `1/width` column and the per-feature sums of
the parameter gradients as a product with a row of ones (so they run as YNNPACK matmuls), it
runs as fast as PyTorch's (`benchmarks/diagnostics/layernorm_step.py`; its figures are in
`benchmarks/results/report.md` and `step_profile.md`). The products are CPU's only: the speed
was measured there, so other platforms reduce as flax does, with the same closed-form backward.
They run at `Precision.HIGHEST`, to stay float32 whatever a backend's default precision.
"""

from functools import partial

import jax
import jax.numpy as jnp
from flax import nnx

_EXACT = jax.lax.Precision.HIGHEST


def _row_mean_by_matmul(a: jax.Array) -> jax.Array:
  width = a.shape[-1]
  return jnp.matmul(a, jnp.full((width, 1), 1.0 / width, a.dtype), precision=_EXACT)


def _feature_sum_by_matmul(a: jax.Array) -> jax.Array:
  rows = a.reshape(-1, a.shape[-1])
  return jnp.matmul(jnp.ones((1, rows.shape[0]), a.dtype), rows, precision=_EXACT)[0]


def _row_mean(a: jax.Array) -> jax.Array:
  """The mean over the last axis, kept as a size-1 axis: on CPU `a @ (1/width)`, elsewhere
  a reduction (the products were measured on CPU only; `platform_dependent` picks when the
  program is lowered, so a TPU program compiled from a CPU host gets the reduction)."""
  return jax.lax.platform_dependent(a, cpu=_row_mean_by_matmul,
                                    default=lambda a: a.mean(-1, keepdims=True))


def _feature_sum(a: jax.Array) -> jax.Array:
  """The sum over every axis but the last: on CPU `ones @ a` over the rows, elsewhere a
  reduction."""
  return jax.lax.platform_dependent(a, cpu=_feature_sum_by_matmul,
                                    default=lambda a: a.sum(tuple(range(a.ndim - 1))))


@partial(jax.custom_vjp, nondiff_argnums=(3,))
def layer_norm(x: jax.Array, scale: jax.Array, bias: jax.Array, epsilon: float) -> jax.Array:
  """`(x - mean) / sqrt(var + epsilon) * scale + bias` over x's last axis, statistics,
  arithmetic and result in float32 whatever x's dtype (x's gradient comes back in x's)."""
  return _forward(x, scale, bias, epsilon)[0]


def _forward(x, scale, bias, epsilon):
  x32 = x.astype(jnp.float32)
  centred = x32 - _row_mean(x32)
  inv_std = jax.lax.rsqrt(_row_mean(centred * centred) + epsilon)
  normalised = centred * inv_std
  y = normalised * scale.astype(jnp.float32) + bias.astype(jnp.float32)
  # x's dtype travels as an empty array of it (residuals must be arrays).
  return y, (normalised, inv_std, scale, bias, jnp.zeros((0,), x.dtype))


def _backward(epsilon, residuals, grad):
  del epsilon
  normalised, inv_std, scale, bias, x_like = residuals
  grad = grad.astype(jnp.float32)
  scaled = grad * scale.astype(jnp.float32)
  dx = inv_std * (scaled - _row_mean(scaled) - normalised * _row_mean(scaled * normalised))
  return (dx.astype(x_like.dtype), _feature_sum(grad * normalised).astype(scale.dtype),
          _feature_sum(grad).astype(bias.dtype))


layer_norm.defvjp(_forward, _backward)


class LayerNorm(nnx.LayerNorm):
  """`nnx.LayerNorm` (same constructor, parameters and checkpoints) that runs `layer_norm`
  when it normalises over the last axis with a scale and a bias and no mask, as every ViT
  LayerNorm here does; any other configuration runs nnx.LayerNorm's own code. The output is
  in the layer's `dtype` (when None, the input's promoted with the parameters'), as
  nnx.LayerNorm's."""

  def __call__(self, x: jax.Array, *, mask: jax.Array | None = None) -> jax.Array:
    last_axis = self.reduction_axes in (-1, x.ndim - 1, (-1,)) and \
        self.feature_axes in (-1, x.ndim - 1, (-1,))
    if mask is not None or not (self.use_scale and self.use_bias and last_axis) or \
        self.axis_name is not None:
      return super().__call__(x, mask=mask)
    out = layer_norm(x, self.scale[...], self.bias[...], self.epsilon)
    return out.astype(self.dtype or jnp.promote_types(x.dtype, self.param_dtype))
