"""Classification heads on the ViT encoder."""

import jax
from flax import nnx

from mll_jax.models import vit


class Classifier(nnx.Module):
  """ViT encoder + linear head. Params: `{"encoder": ..., "head": ...}`, so an MAE checkpoint's
  `encoder` loads as is and only the head starts fresh. Returns `(logits, aux)`."""

  def __init__(self, variant: str, *, num_classes: int, image_size: int, channels: int,
               patch_size: int | None = None, pool: str = "gap", drop_path_rate: float = 0.0,
               head_init_std: float = 2e-5, rngs: nnx.Rngs):
    self.encoder = vit.ViT(variant, image_size=image_size, channels=channels,
                           patch_size=patch_size, pool=pool, drop_path_rate=drop_path_rate,
                           rngs=rngs)
    # MAE's fine-tuning initialises the head near zero (std 2e-5).
    self.head = nnx.Linear(self.encoder.size.width, num_classes,
                           kernel_init=nnx.initializers.normal(head_init_std),
                           bias_init=nnx.initializers.zeros_init(), rngs=rngs)

  def __call__(self, images: jax.Array, key: jax.Array | None = None):
    pre_logits, aux = self.encoder(images, key)
    logits = self.head(pre_logits)
    return logits, dict(aux, logits=logits)
