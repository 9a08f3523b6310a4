"""The ViT's exact GELU (erf form with a closed-form derivative) against JAX's erfc form and
PyTorch's `nn.GELU()`: values and gradients, float32 and bfloat16."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mll_jax.models import gelu


def _inputs(dtype=jnp.float32) -> jax.Array:
  # The tails matter: Phi(x) is 0 or 1 to float32 precision beyond |x| ~ 6.
  grid = jnp.linspace(-12.0, 12.0, 4001)
  return jnp.concatenate([grid, 3.0 * jax.random.normal(jax.random.key(0), (4000,))]).astype(dtype)


def test_value_and_gradient_equal_the_erfc_form():
  x = _inputs()
  reference = lambda t: jax.nn.gelu(t, approximate=False)
  np.testing.assert_allclose(gelu.gelu(x), reference(x), atol=2e-6, rtol=1e-6)
  grad = jax.vmap(jax.grad(gelu.gelu))(x)
  np.testing.assert_allclose(grad, jax.vmap(jax.grad(reference))(x), atol=2e-6, rtol=1e-6)
  # Far from the tanh approximation on the same points, so the test tells the forms apart.
  assert float(jnp.max(jnp.abs(gelu.gelu(x) - jax.nn.gelu(x, approximate=True)))) > 1e-4


def test_second_derivative_is_the_normal_density_formula():
  """The custom JVP is itself differentiable (a Hessian-vector product, or a JVP through the
  backward pass, must not silently give zero)."""
  x = _inputs()[::40]
  second = jax.vmap(jax.grad(jax.grad(gelu.gelu)))(x)
  pdf = jnp.exp(-0.5 * x * x) / jnp.sqrt(2 * jnp.pi)
  np.testing.assert_allclose(second, pdf * (2.0 - x * x), atol=1e-5, rtol=1e-4)


def test_bfloat16_stays_bfloat16():
  x = _inputs(jnp.bfloat16)
  y, grad = gelu.gelu(x), jax.vmap(jax.grad(gelu.gelu))(x)
  assert y.dtype == grad.dtype == jnp.bfloat16
  exact = jax.nn.gelu(x.astype(jnp.float32), approximate=False)
  np.testing.assert_allclose(y.astype(jnp.float32), exact, atol=0.05, rtol=0.02)


def test_matches_pytorch_gelu():
  torch = pytest.importorskip("torch", reason="PyTorch is in the test extra; parity needs it")
  x = np.asarray(_inputs())
  t = torch.tensor(x, requires_grad=True)
  out = torch.nn.GELU()(t)
  out.sum().backward()
  np.testing.assert_allclose(gelu.gelu(jnp.asarray(x)), out.detach().numpy(), atol=2e-6, rtol=1e-6)
  np.testing.assert_allclose(jax.vmap(jax.grad(gelu.gelu))(jnp.asarray(x)), t.grad.numpy(),
                             atol=2e-6, rtol=1e-6)
