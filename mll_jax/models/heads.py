"""Classification heads on the ViT encoder."""

import jax
import jax.numpy as jnp
from flax import nnx

from mll_jax.models import layer_plan, projection, vit


class Classifier(nnx.Module):
  """ViT encoder + linear head. Params: `{"encoder": ..., "head": ...}`, so an MAE checkpoint's
  `encoder` loads as is and only the head starts fresh. Returns `(logits, aux)`.

  `head_norm="batchnorm"` puts a BatchNorm without affine parameters in front of the head and
  `frozen_trunk=True` stops gradients at the pooled features: MAE's linear-probe protocol.
  `projection_layers=1` keeps the first layer of a SimCLR projection head (`proj_hidden` wide,
  as pre-trained) between the pooled features and the head: SimCLRv2's fine-tuning, which
  starts from that layer (params `projection/layers/0`, loaded from the SimCLR run).
  Calling with a `key` is training mode (drop path, batch statistics); without, evaluation.
  `dtype`, `layers` and `read_blocks` go to the encoder (`vit.ViT`); the head and its
  BatchNorm run in float32 on the float32 pooled features, so the logits are float32.
  """

  def __init__(self, variant: "str | vit.Size", *, num_classes: int, image_size: int,
               channels: int, patch_size: int | None = None, pool: str = "gap",
               drop_path_rate: float = 0.0, head_init_std: float = 2e-5, head_norm: str = "",
               frozen_trunk: bool = False, posemb: str = "sincos", fc_norm: bool = False,
               qkv_bias: bool = True, projection_layers: int = 0, proj_hidden: int = 512,
               dtype=jnp.float32, layers: layer_plan.LayerPlan = layer_plan.PLAIN,
               read_blocks: int = 1, rngs: nnx.Rngs):
    self.encoder = vit.ViT(variant, image_size=image_size, channels=channels,
                           patch_size=patch_size, pool=pool, drop_path_rate=drop_path_rate,
                           posemb=posemb, fc_norm=fc_norm, qkv_bias=qkv_bias, dtype=dtype,
                           layers=layers, read_blocks=read_blocks, rngs=rngs)
    if head_norm not in ("", "batchnorm"):
      raise ValueError(f"head_norm must be '' or 'batchnorm', got {head_norm!r}.")
    self.frozen_trunk = frozen_trunk
    self.projection = projection.kept_layers(self.encoder.features, proj_hidden,
                                             projection_layers, rngs=rngs)
    features = proj_hidden if self.projection is not None else self.encoder.features
    self.head_norm = (nnx.BatchNorm(features, use_bias=False, use_scale=False,
                                    momentum=0.9, epsilon=1e-6, rngs=rngs)
                      if head_norm == "batchnorm" else None)
    # MAE's fine-tuning initialises the head near zero (std 2e-5).
    self.head = nnx.Linear(features, num_classes,
                           kernel_init=nnx.initializers.normal(head_init_std),
                           bias_init=nnx.initializers.zeros_init(), rngs=rngs)

  def __call__(self, images: jax.Array, key: jax.Array | None = None):
    pre_logits, aux = self.encoder(images, key)
    if self.frozen_trunk:  # no backward pass through the trunk at all
      pre_logits = jax.lax.stop_gradient(pre_logits)
    if self.projection is not None:
      pre_logits = self.projection(pre_logits)
    if self.head_norm is not None:
      pre_logits = self.head_norm(pre_logits, use_running_average=key is None)
    logits = self.head(pre_logits)
    return logits, dict(aux, logits=logits)
