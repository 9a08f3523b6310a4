"""The convolutional family (Flax NNX): small plain CNNs (the reference baseline beside the
ViTs) and ResNets (`resnet.py`, SimCLRv2's backbone), with one classifier over either trunk;
hub experts of another architecture than the ViTs.

Each stage is conv 3x3 -> BatchNorm -> ReLU (`convs_per_stage` times), then 2x2 max pooling;
the trunk ends in global average pooling. `cnn_s` is the 94k-parameter CNN that set the
reference accuracies of shared/design/references.md (3 stages of 32, 64, 128 channels). The
BatchNorm statistics are model state (`nnx.BatchStat`), carried through the train step,
checkpoints and the hub like a linear probe's. Calling with a `key` is training mode (batch
statistics); without, evaluation (running statistics).
"""

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from mll_jax.models import precision, projection, resnet, vit


@dataclasses.dataclass(frozen=True)
class CNNSize:
  """Channels of each stage and the convolutions in each."""
  widths: tuple[int, ...]
  convs_per_stage: int = 1


CNN_SIZES = {
    "cnn_mu": CNNSize(widths=(8, 16)),           # tests: compiles in a second
    "cnn_s": CNNSize(widths=(32, 64, 128)),      # the 94k-parameter reference CNN
    "cnn_m": CNNSize(widths=(64, 128, 256), convs_per_stage=2),
}


def cnn_size(variant: str) -> CNNSize:
  """Looks a named CNN size up, with a message listing the known names."""
  if variant not in CNN_SIZES:
    raise ValueError(f"Unknown CNN variant {variant!r}; known CNN variants: "
                     f"{', '.join(CNN_SIZES)}, and ResNets resnet{{18,34,50,101,152}}"
                     "[x{width}][_sk].")
  return CNN_SIZES[variant]


class ConvBNReLU(nnx.Module):
  """3x3 convolution (no bias: the BatchNorm has one), BatchNorm, ReLU."""

  def __init__(self, in_channels: int, out_channels: int, *, dtype=jnp.float32,
               rngs: nnx.Rngs):
    self.conv = nnx.Conv(in_channels, out_channels, kernel_size=(3, 3), padding="SAME",
                         use_bias=False, kernel_init=nnx.initializers.he_normal(), dtype=dtype,
                         rngs=rngs)
    # Batch statistics are computed in float32 and kept float32 whatever `dtype`.
    self.norm = nnx.BatchNorm(out_channels, momentum=0.9, epsilon=1e-5, dtype=dtype, rngs=rngs)

  def __call__(self, x: jax.Array, training: bool) -> jax.Array:
    return jax.nn.relu(self.norm(self.conv(x), use_running_average=not training))


class CNN(nnx.Module):
  """The convolutional trunk. Returns `(pre_logits, aux)` like `vit.ViT`: `aux["encoded"]` is
  the last feature map, `aux["pre_logits"]` its global average (float32 whatever the compute
  `dtype`)."""

  def __init__(self, variant: str, *, image_size: int, channels: int, dtype=jnp.float32,
               rngs: nnx.Rngs):
    self.size = cnn_size(variant)
    stages = len(self.size.widths)
    if image_size < 2 ** stages:
      raise ValueError(f"Image size {image_size} is too small for {stages} pooling stages of "
                       f"{variant!r}; use a larger config.data.image_size or a smaller CNN.")
    self.width = self.size.widths[-1]
    blocks, fan_in = [], channels
    for width in self.size.widths:
      for _ in range(self.size.convs_per_stage):
        blocks.append(ConvBNReLU(fan_in, width, dtype=dtype, rngs=rngs))
        fan_in = width
    self.blocks = nnx.List(blocks)

  def __call__(self, images: jax.Array, key: jax.Array | None = None):
    training = key is not None
    x = vit.normalize_images(images)
    per_stage = self.size.convs_per_stage
    for i, block in enumerate(self.blocks):
      x = block(x, training)
      if (i + 1) % per_stage == 0:
        x = nnx.max_pool(x, window_shape=(2, 2), strides=(2, 2), padding="SAME")
    pre_logits = precision.to_float32(x.mean(axis=(1, 2)))
    return pre_logits, {"encoded": x, "pre_logits": pre_logits}


def trunk(variant: str, *, image_size: int, channels: int, stem: str = "imagenet",
          dtype=jnp.float32, rngs: nnx.Rngs) -> "CNN | resnet.ResNet":
  """The family's trunk of `variant`: a plain CNN (`cnn_*`) or a ResNet (`resnet*`)."""
  if resnet.is_resnet(variant):
    return resnet.ResNet(variant, image_size=image_size, channels=channels, stem=stem,
                         dtype=dtype, rngs=rngs)
  return CNN(variant, image_size=image_size, channels=channels, dtype=dtype, rngs=rngs)


class CNNClassifier(nnx.Module):
  """Convolutional trunk (`trunk`) + linear head, with the `heads.Classifier` interface:
  params `{"encoder": ..., "head": ...}`, `(logits, aux)`, `frozen_trunk` for linear probing,
  and `projection_layers` (SimCLRv2's fine-tuning from a SimCLR projection head's first layer)."""

  def __init__(self, variant: str, *, num_classes: int, image_size: int, channels: int,
               head_init_std: float = 0.01, frozen_trunk: bool = False, stem: str = "imagenet",
               projection_layers: int = 0, proj_hidden: int = 512, dtype=jnp.float32,
               rngs: nnx.Rngs):
    self.encoder = trunk(variant, image_size=image_size, channels=channels, stem=stem,
                         dtype=dtype, rngs=rngs)
    self.frozen_trunk = frozen_trunk
    self.projection = projection.kept_layers(self.encoder.width, proj_hidden,
                                             projection_layers, rngs=rngs)
    features = proj_hidden if self.projection is not None else self.encoder.width
    self.head = nnx.Linear(features, num_classes,
                           kernel_init=nnx.initializers.normal(head_init_std),
                           bias_init=nnx.initializers.zeros_init(), rngs=rngs)

  def __call__(self, images: jax.Array, key: jax.Array | None = None):
    # A frozen trunk runs in evaluation mode: its BatchNorm statistics stay as trained.
    pre_logits, aux = self.encoder(images, None if self.frozen_trunk else key)
    if self.frozen_trunk:
      pre_logits = jax.lax.stop_gradient(pre_logits)
    if self.projection is not None:
      pre_logits = self.projection(pre_logits)
    logits = self.head(pre_logits)
    return logits, dict(aux, logits=logits)
