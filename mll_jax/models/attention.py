"""Multi-head scaled dot-product attention of the ViT: `jax.nn.dot_product_attention`, or
the same product written head-major (`config.model.attention="einsum"`).

Why a form of our own: `jax.nn.dot_product_attention`'s XLA path takes `[b, t, n, h]` operands
and computes `[b, n, t, s]` logits, so XLA's CPU backend transposes the queries, keys and values
to head-major inside each call, and normalises the `[b, n, t, s]` probabilities before their
product with the values. Split head-major once from the fused qkv output, and dividing the
`[b, n, t, h]` output by the softmax's sums instead (the same numbers: the sums do not depend
on the value index), one attention layer of the MAE `tiny` encoder ran 1.3-1.8x faster forward
on the 2-core CPU. In whole programs the gain is smaller and not steady: the encoder's forward
1.05-1.12x in four alternating runs, a `mini` hub expert's logits 1.06x and 0.97x, the train
step 0.93-1.03x (`benchmarks/results/attention.md`, `report.md`, `step_profile.md`). So `auto`
keeps JAX's kernel everywhere, and this one is there to choose (forward-heavy work on CPU:
labelling with a wider ViT).
"""

import einops
import jax
import jax.numpy as jnp

# `config.model.attention` -> `jax.nn.dot_product_attention(implementation=...)`: "auto" lets
# JAX pick (cuDNN's fused kernel on a GPU where it applies, XLA's otherwise), "cudnn" insists
# on it (GPU only); "einsum" is `head_major_attention`.
IMPLEMENTATIONS = {"auto": None, "xla": "xla", "cudnn": "cudnn", "einsum": "einsum"}


def implementation_for(name: str) -> str | None:
  """The kernel that `config.model.attention=name` runs; an unknown name gets one message
  listing the known ones."""
  if name not in IMPLEMENTATIONS:
    raise ValueError(f"config.model.attention must be one of {', '.join(IMPLEMENTATIONS)}; "
                     f"got {name!r}.")
  return IMPLEMENTATIONS[name]


def multi_head_attention(qkv: jax.Array, heads: int, implementation: str | None) -> jax.Array:
  """Self-attention of the fused `[b, t, 3 * width]` qkv projection (timm's layout: queries,
  keys, values, each `heads` heads wide), queries scaled by `head_dim ** -0.5` before the dot
  as timm does; returns `[b, t, width]` with the heads concatenated."""
  if implementation == "einsum":
    return head_major_attention(qkv, heads)
  q, k, v = (einops.rearrange(t, "b t (n h) -> b t n h", n=heads)
             for t in jnp.split(qkv, 3, axis=-1))
  # Scaling the queries, not the [b, n, t, t] logits (jax's default): XLA's CPU backend
  # materialised the scale broadcast to the logits' shape (benchmarks/results/step_profile.md).
  q = q * jnp.asarray(q.shape[-1] ** -0.5, q.dtype)
  out = jax.nn.dot_product_attention(q, k, v, scale=1.0, implementation=implementation)
  return einops.rearrange(out, "b t n h -> b t (n h)")


def head_major_attention(qkv: jax.Array, heads: int) -> jax.Array:
  """`multi_head_attention` computed on `[b, n, t, h]` operands, the softmax normalised after
  the product with the values. Logits, exponentials and sums are float32 whatever the input's
  dtype, as `jax.nn.dot_product_attention` keeps its softmax."""
  q, k, v = einops.rearrange(qkv, "b t (three n h) -> three b n t h", three=3, n=heads)
  q = q * jnp.asarray(q.shape[-1] ** -0.5, q.dtype)
  logits = jnp.einsum("bnth,bnsh->bnts", q, k, preferred_element_type=jnp.float32)
  # The row maximum only keeps exp in range; its gradient cancels, so it is not traced.
  weights = jnp.exp(logits - jax.lax.stop_gradient(logits.max(-1, keepdims=True)))
  out = jnp.einsum("bnts,bnsh->bnth", weights.astype(v.dtype), v)
  out = (out / weights.sum(-1, keepdims=True)).astype(v.dtype)
  return einops.rearrange(out, "b n t h -> b t (n h)")
