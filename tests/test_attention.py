"""The ViT's attention kernels (`mll_jax.models.attention`): the head-major form computes what
`jax.nn.dot_product_attention` computes, values and gradients, in each dtype and through a hub
entry; `auto` stays JAX's choice; unknown names listed."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mll_jax.hub import functional
from mll_jax.models import attention, layer_plan

# (batch, tokens, heads, head width): the MAE encoder's visible tokens, a ViT's full
# sequence, and the `mini` model's 3 heads of 32.
SHAPES = [(4, 13, 3, 64), (2, 50, 4, 32), (3, 17, 3, 32)]


def _qkv(shape, dtype=jnp.float32, seed=0):
  b, t, n, h = shape
  return jax.random.normal(jax.random.key(seed), (b, t, 3 * n * h), jnp.float32).astype(dtype) * 2


@pytest.mark.slow
@pytest.mark.parametrize("shape", SHAPES)
def test_head_major_form_equals_jax_attention_in_values_and_gradients(shape):
  qkv, heads = _qkv(shape), shape[2]
  cotangent = jax.random.normal(jax.random.key(1), (shape[0], shape[1], shape[2] * shape[3]))
  outputs, grads = {}, {}
  for kernel in ("einsum", "xla"):
    out, pullback = jax.vjp(lambda x: attention.multi_head_attention(x, heads, kernel), qkv)
    outputs[kernel], grads[kernel] = out, pullback(cotangent)[0]
  np.testing.assert_allclose(outputs["einsum"], outputs["xla"], atol=1e-5, rtol=1e-5)
  np.testing.assert_allclose(grads["einsum"], grads["xla"], atol=1e-4, rtol=1e-4)
  assert outputs["einsum"].shape == (shape[0], shape[1], shape[2] * shape[3])


def test_head_major_form_keeps_bfloat16_inputs_bfloat16():
  qkv = _qkv(SHAPES[1], jnp.bfloat16)
  einsum = attention.multi_head_attention(qkv, 4, "einsum")
  xla = attention.multi_head_attention(qkv, 4, "xla")
  assert einsum.dtype == xla.dtype == jnp.bfloat16
  # Two bfloat16 ulps: the two forms round the probabilities at different points.
  np.testing.assert_allclose(np.asarray(einsum, np.float32), np.asarray(xla, np.float32),
                             rtol=1.6e-2, atol=1e-2)


def test_large_logits_do_not_overflow():
  # exp of raw logits this large is inf in float32; the row maximum is subtracted first.
  qkv = _qkv(SHAPES[0]) * 40
  out = attention.multi_head_attention(qkv, 3, "einsum")
  assert np.isfinite(np.asarray(out)).all()
  np.testing.assert_allclose(out, attention.multi_head_attention(qkv, 3, "xla"), rtol=1e-4,
                             atol=1e-3)


def test_auto_is_jax_choice_and_einsum_the_head_major_form():
  assert layer_plan.LayerPlan().attention_implementation is None       # JAX's pick
  assert layer_plan.LayerPlan(attention="einsum").attention_implementation == "einsum"


def test_a_hub_entry_gives_the_same_logits_with_either_kernel():
  expert = {"task": "expert", "model": {"variant": "mu", "patch_size": 4},
            "image_size": 28, "channels": 1, "num_classes": 3}
  variables = functional.init_variables(expert, seed=1)
  images = jax.random.randint(jax.random.key(2), (8, 28, 28, 1), 0, 256).astype(jnp.uint8)
  logits = {kernel: jax.jit(functional.apply_fn(
      dict(expert, model={**expert["model"], "attention": kernel})))(variables, images)
      for kernel in ("einsum", "xla")}
  np.testing.assert_allclose(logits["einsum"], logits["xla"], atol=1e-5)


def test_unknown_attention_kernel_lists_the_known_ones():
  with pytest.raises(ValueError, match="attention must be one of auto, xla, cudnn, einsum; "
                                       "got 'flash'"):
    attention.implementation_for("flash")
