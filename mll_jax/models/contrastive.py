"""ViT encoder + MLP projection head for contrastive pre-training (SimCLR)."""

import jax
import jax.numpy as jnp
from flax import nnx

from mll_jax.models import layer_plan, vit


class ProjectionMLP(nnx.Module):
  """`depth` linear layers with GELU between them (SimCLRv2 uses 3).

  No BatchNorm: its statistics would need a cross-device reduction per step and model state,
  and with AdamW on a ViT the head trains well without it.
  """

  def __init__(self, width: int, hidden: int, out: int, depth: int, *, rngs: nnx.Rngs):
    dims = [width] + [hidden] * (depth - 1) + [out]
    self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(dims[:-1], dims[1:])])

  def __call__(self, x: jax.Array) -> jax.Array:
    for i, layer in enumerate(self.layers):
      x = layer(x)
      if i < len(self.layers) - 1:
        x = jax.nn.gelu(x)
    return x


class ContrastiveViT(nnx.Module):
  """`{"encoder", "projection"}`; returns `(projection, aux)` with the encoder's pre_logits.
  `dtype` and `layers` go to the encoder; the projection head runs in float32 (the encoder's
  pooled output is float32), so NT-Xent sees float32."""

  def __init__(self, variant: str, *, image_size: int, channels: int,
               patch_size: int | None = None, proj_hidden: int = 512, proj_dim: int = 128,
               proj_depth: int = 3, dtype=jnp.float32,
               layers: layer_plan.LayerPlan = layer_plan.PLAIN, rngs: nnx.Rngs):
    self.encoder = vit.ViT(variant, image_size=image_size, channels=channels,
                           patch_size=patch_size, dtype=dtype, layers=layers, rngs=rngs)
    self.projection = ProjectionMLP(self.encoder.size.width, proj_hidden, proj_dim, proj_depth,
                                    rngs=rngs)

  def __call__(self, images: jax.Array):
    pre_logits, aux = self.encoder(images)
    projected = self.projection(pre_logits)
    return projected, dict(aux, projection=projected)
