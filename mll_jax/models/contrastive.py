"""An encoder (ViT or convolutional) + MLP projection head for contrastive pre-training
(SimCLR)."""

import jax
import jax.numpy as jnp
from flax import nnx

from mll_jax.models import cnn, layer_plan, vit
from mll_jax.models.projection import ProjectionMLP


class Contrastive(nnx.Module):
  """`{"encoder", "projection"}`: a ViT (`family="vit"`) or a convolutional trunk
  (`family="cnn"`: a plain CNN or a ResNet, SimCLRv2's backbone) with the projection MLP.
  Returns `(projection, aux)` with the encoder's pre_logits. `dtype` and `layers` go to the
  encoder (`layers` to a ViT only); the projection head runs in float32 on the float32 pooled
  features, so NT-Xent sees float32. Calling with a `key` is training mode (drop path, and
  batch statistics in a ResNet's BatchNorms)."""

  def __init__(self, variant: str, *, image_size: int, channels: int, family: str = "vit",
               patch_size: int | None = None, stem: str = "imagenet", proj_hidden: int = 512,
               proj_dim: int = 128, proj_depth: int = 3, dtype=jnp.float32,
               layers: layer_plan.LayerPlan = layer_plan.PLAIN, rngs: nnx.Rngs):
    if family == "vit":
      self.encoder = vit.ViT(variant, image_size=image_size, channels=channels,
                             patch_size=patch_size, dtype=dtype, layers=layers, rngs=rngs)
      width = self.encoder.features
    elif family == "cnn":
      self.encoder = cnn.trunk(variant, image_size=image_size, channels=channels, stem=stem,
                               dtype=dtype, rngs=rngs)
      width = self.encoder.width
    else:
      raise ValueError(f"config.model.family must be 'vit' or 'cnn', got {family!r}.")
    self.projection = ProjectionMLP(width, proj_hidden, proj_dim, proj_depth, rngs=rngs)

  def __call__(self, images: jax.Array, key: jax.Array | None = None):
    pre_logits, aux = self.encoder(images, key)
    projected = self.projection(pre_logits)
    return projected, dict(aux, projection=projected)
