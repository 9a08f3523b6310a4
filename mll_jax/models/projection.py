"""The contrastive projection MLP (SimCLR), and the part of it a fine-tuned classifier keeps.

SimCLRv2 (shared/design/references.md) fine-tunes from the first layer of the pre-trained 3-layer
projection head rather than from the encoder's output: the classifier keeps that layer (and its
activation) between the encoder and the new head. Both modules name their layers
`layers/0`, `layers/1`, ..., so a SimCLR checkpoint's `projection/layers/0` loads by name into
a classifier's `projection/layers/0`.
"""

import jax
from flax import nnx


class ProjectionMLP(nnx.Module):
  """`depth` linear layers with GELU between them (SimCLRv2 uses 3); with `activate_last`, a
  GELU after the last one too (the layers a classifier keeps feed its head as they fed the next
  projection layer).

  No BatchNorm: its statistics would need a cross-device reduction per step and model state,
  and with AdamW on a ViT the head trains well without it.
  """

  def __init__(self, width: int, hidden: int, out: int, depth: int, *,
               activate_last: bool = False, rngs: nnx.Rngs):
    dims = [width] + [hidden] * (depth - 1) + [out]
    self.activate_last = activate_last
    self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(dims[:-1], dims[1:])])

  def __call__(self, x: jax.Array) -> jax.Array:
    for i, layer in enumerate(self.layers):
      x = layer(x)
      if i < len(self.layers) - 1 or self.activate_last:
        x = jax.nn.gelu(x)
    return x


def kept_layers(width: int, hidden: int, layers: int, *, rngs: nnx.Rngs):
  """The first `layers` layers of a projection MLP of hidden width `hidden` on `width`-wide
  features, for a classifier to fine-tune from (SimCLRv2: 1); None for 0 (the encoder's own
  output feeds the head)."""
  if not isinstance(layers, int) or isinstance(layers, bool) or layers < 0:
    raise ValueError(f"config.model.projection_layers must be a whole number >= 0 (SimCLRv2 "
                     f"fine-tunes from 1), got {layers!r}.")
  if layers == 0:
    return None
  return ProjectionMLP(width, hidden, hidden, layers, activate_last=True, rngs=rngs)
