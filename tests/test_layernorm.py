"""The ViT's LayerNorm (`mll_jax.models.layernorm`) against `nnx.LayerNorm` and PyTorch's:
values, gradients, dtypes, parameters, and the configurations it hands back to flax."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mll_jax.models import layernorm, vit


def _pair(width: int, dtype=jnp.float32):
  """The two layers with the same (non-trivial) scale and bias."""
  ours = layernorm.LayerNorm(width, epsilon=1e-6, dtype=dtype, rngs=nnx.Rngs(0))
  flax_layer = nnx.LayerNorm(width, epsilon=1e-6, dtype=dtype, rngs=nnx.Rngs(0))
  keys = jax.random.split(jax.random.key(1))
  for layer in (ours, flax_layer):
    layer.scale[...] = 1.0 + 0.3 * jax.random.normal(keys[0], (width,))
    layer.bias[...] = 0.2 * jax.random.normal(keys[1], (width,))
  return ours, flax_layer


def _value_and_grads(layer, x, cotangent):
  graphdef, params = nnx.split(layer)

  def loss(params, x):
    return jnp.sum(nnx.merge(graphdef, params)(x).astype(jnp.float32) * cotangent)

  value = nnx.merge(graphdef, params)(x)
  grads = jax.grad(loss, argnums=(0, 1))(params, x)
  return value, grads[1], grads[0]["scale"][...], grads[0]["bias"][...]


@pytest.mark.slow
@pytest.mark.parametrize("shape", [(4, 13, 192), (3, 50, 128), (7, 96)])
def test_values_and_gradients_equal_flax(shape):
  # An offset and a spread far from 0 and 1, where `mean(x^2) - mean(x)^2` and the two-pass
  # variance would part if either were computed carelessly.
  x = 3.0 + 2.5 * jax.random.normal(jax.random.key(2), shape)
  cotangent = jax.random.normal(jax.random.key(3), shape)
  ours, flax_layer = _pair(shape[-1])
  for got, want in zip(_value_and_grads(ours, x, cotangent),
                       _value_and_grads(flax_layer, x, cotangent)):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=2e-5)


def test_values_and_gradients_equal_pytorch():
  torch = pytest.importorskip("torch")
  shape = (2, 50, 128)
  x = np.array(1.0 + 2.0 * jax.random.normal(jax.random.key(4), shape))
  cotangent = np.array(jax.random.normal(jax.random.key(5), shape))
  ours, _ = _pair(shape[-1])
  value, dx, dscale, dbias = _value_and_grads(ours, jnp.asarray(x), jnp.asarray(cotangent))
  reference = torch.nn.LayerNorm(shape[-1], eps=1e-6)
  with torch.no_grad():
    reference.weight.copy_(torch.from_numpy(np.array(ours.scale[...])))
    reference.bias.copy_(torch.from_numpy(np.array(ours.bias[...])))
  tx = torch.from_numpy(x).requires_grad_(True)
  out = reference(tx)
  (out * torch.from_numpy(cotangent)).sum().backward()
  for got, want in ((value, out), (dx, tx.grad), (dscale, reference.weight.grad),
                    (dbias, reference.bias.grad)):
    np.testing.assert_allclose(got, want.detach().numpy(), rtol=1e-4, atol=2e-5)


def test_bfloat16_layer_keeps_float32_statistics_and_parameters():
  shape = (4, 13, 192)
  x = (3.0 + jax.random.normal(jax.random.key(6), shape)).astype(jnp.bfloat16)
  ours, flax_layer = _pair(shape[-1], jnp.bfloat16)
  value, dx, dscale, dbias = _value_and_grads(ours, x, jnp.ones(shape))
  assert value.dtype == dx.dtype == jnp.bfloat16
  assert dscale.dtype == dbias.dtype == jnp.float32
  reference = flax_layer(x).astype(jnp.float32)
  # Within bfloat16's rounding of the output (flax rounds the scale and bias to bfloat16 too).
  np.testing.assert_allclose(value.astype(jnp.float32), reference, rtol=2e-2, atol=2e-2)


def test_output_dtype_follows_flax_when_dtype_is_none():
  ours = layernorm.LayerNorm(8, rngs=nnx.Rngs(0))
  flax_layer = nnx.LayerNorm(8, rngs=nnx.Rngs(0))
  x = jnp.ones((2, 8), jnp.bfloat16)
  assert ours(x).dtype == flax_layer(x).dtype == jnp.float32


def test_same_parameters_as_flax():
  """Checkpoints and converted timm weights name and shape LayerNorm parameters as flax."""
  ours, flax_layer = _pair(64)
  shapes = lambda layer: jax.tree.map(jnp.shape, nnx.state(layer, nnx.Param))
  assert shapes(ours) == shapes(flax_layer)


@pytest.mark.parametrize("options", [dict(use_bias=False), dict(use_scale=False),
                                     dict(reduction_axes=(-2, -1), feature_axes=-1)])
def test_other_configurations_run_flax(options):
  ours = layernorm.LayerNorm(16, rngs=nnx.Rngs(0), **options)
  flax_layer = nnx.LayerNorm(16, rngs=nnx.Rngs(0), **options)
  x = 2.0 + jax.random.normal(jax.random.key(7), (3, 5, 16))
  np.testing.assert_array_equal(ours(x), flax_layer(x))


def test_mask_runs_flax():
  ours, flax_layer = _pair(16)
  x = jax.random.normal(jax.random.key(8), (3, 16))
  mask = jnp.arange(16)[None, :] < 10
  np.testing.assert_array_equal(ours(x, mask=jnp.broadcast_to(mask, x.shape)),
                                flax_layer(x, mask=jnp.broadcast_to(mask, x.shape)))


def test_vit_blocks_use_it():
  model = vit.ViT("mu", image_size=28, channels=1, fc_norm=True, rngs=nnx.Rngs(0))
  norms = [m for _, m in nnx.iter_graph(model) if isinstance(m, nnx.LayerNorm)]
  assert norms and all(isinstance(m, layernorm.LayerNorm) for m in norms)


def test_cpu_program_takes_statistics_as_products():
  """On CPU the row means and the parameter gradients' sums are matmuls (the reason for this
  layer), and the other platforms' branch is gone from the compiled program."""
  x, scale, bias = jnp.ones((4, 8, 16)), jnp.ones(16), jnp.zeros(16)
  grad = jax.jit(jax.grad(lambda x, s, b: layernorm.layer_norm(x, s, b, 1e-6).sum(),
                          argnums=(0, 1, 2)))
  compiled = grad.lower(x, scale, bias).compile().as_text()
  assert "conditional" not in compiled
  # mean and variance, the backward's two row means, and the scale's and bias's sums.
  assert compiled.count(" dot(") == 6
