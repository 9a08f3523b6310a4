"""ResNets (Flax NNX) in the convolutional family: ResNet-18/34 (basic blocks) and 50/101/152
(bottlenecks), a width multiplier and selective kernels as in SimCLRv2, and a small-image stem.

The layout follows torchvision's `ResNet` (v1.5: the stride in the bottleneck's 3x3 conv, a 1x1
conv + BatchNorm shortcut where the shape changes) so that its and timm's state dicts map one
to one (`convert_resnet.py`). Paddings are torchvision's explicit ones, so outputs match it.

Variant names: `resnet{depth}` with optional `x{width}` and `_sk`, e.g. `resnet50`,
`resnet50x2_sk` (SimCLRv2's ResNet-50 2x with selective kernels), and `resnet_mu` for tests.
`stem="small"` (a 3x3 stride-1 conv, no max pooling) suits 28x28 and 32x32 images; the default
`imagenet` stem is the 7x7 stride-2 conv and 3x3 max pooling.

BatchNorm statistics are model state (`nnx.BatchStat`), carried through the train step,
checkpoints and the hub. Calling with `training=True` uses and updates batch statistics.
"""

import dataclasses
import re

import jax
import jax.numpy as jnp
from flax import nnx

from mll_jax.models import precision, vit


@dataclasses.dataclass(frozen=True)
class ResNetSize:
  """Blocks per stage, block kind, base width (64 in torchvision), width multiplier, SK."""
  blocks: tuple[int, ...]
  bottleneck: bool
  base_width: int = 64
  width_multiplier: int = 1
  selective_kernel: bool = False


_DEPTHS = {18: ((2, 2, 2, 2), False), 34: ((3, 4, 6, 3), False), 50: ((3, 4, 6, 3), True),
           101: ((3, 4, 23, 3), True), 152: ((3, 8, 36, 3), True)}
_VARIANT = re.compile(r"resnet(?P<depth>\d+)(x(?P<width>\d+))?(?P<sk>_sk)?")
MU = ResNetSize(blocks=(1, 1), bottleneck=False, base_width=8)  # tests: compiles in a second


def is_resnet(variant: str) -> bool:
  return variant == "resnet_mu" or bool(_VARIANT.fullmatch(variant))


def resnet_size(variant: str) -> ResNetSize:
  """`resnet50x2_sk` -> its ResNetSize; unknown names get one message with the valid form."""
  if variant == "resnet_mu":
    return MU
  match = _VARIANT.fullmatch(variant)
  depth = int(match.group("depth")) if match else None
  if depth not in _DEPTHS:
    raise ValueError(f"Unknown ResNet variant {variant!r}; use resnet_mu or resnet{{18,34,50,101,"
                     "152}}[x{width}][_sk], e.g. resnet18, resnet50x2_sk.")
  blocks, bottleneck = _DEPTHS[depth]
  return ResNetSize(blocks, bottleneck, width_multiplier=int(match.group("width") or 1),
                    selective_kernel=bool(match.group("sk")))


def _conv(cin: int, cout: int, kernel: int, stride: int, rngs: nnx.Rngs, dtype) -> nnx.Conv:
  pad = (kernel - 1) // 2  # torchvision's explicit padding: same output size as it computes
  return nnx.Conv(cin, cout, kernel_size=(kernel, kernel), strides=(stride, stride),
                  padding=((pad, pad), (pad, pad)), use_bias=False,
                  kernel_init=nnx.initializers.variance_scaling(2.0, "fan_out", "normal"),
                  dtype=dtype, rngs=rngs)


def _norm(channels: int, rngs: nnx.Rngs, dtype) -> nnx.BatchNorm:
  # momentum 0.9 here is torch's momentum 0.1; statistics are float32 whatever `dtype`.
  return nnx.BatchNorm(channels, momentum=0.9, epsilon=1e-5, dtype=dtype, rngs=rngs)


class SelectiveKernel(nnx.Module):
  """SimCLRv2's selective-kernel 3x3 conv: two paths from one conv of twice the channels,
  mixed per channel by a softmax over paths computed from their pooled sum."""

  def __init__(self, cin: int, cout: int, stride: int, *, ratio: float = 0.0625,
               min_dim: int = 32, rngs: nnx.Rngs, dtype=jnp.float32):
    self.paths = _conv(cin, 2 * cout, 3, stride, rngs, dtype)
    self.paths_norm = _norm(2 * cout, rngs, dtype)
    mid = max(int(cout * ratio), min_dim)
    self.squeeze = _conv(cout, mid, 1, 1, rngs, dtype)
    self.squeeze_norm = _norm(mid, rngs, dtype)
    self.mixing = _conv(mid, 2 * cout, 1, 1, rngs, dtype)

  def __call__(self, x: jax.Array, training: bool) -> jax.Array:
    paths = jax.nn.relu(self.paths_norm(self.paths(x), use_running_average=not training))
    paths = jnp.stack(jnp.split(paths, 2, axis=-1))                 # [2, B, H, W, C]
    pooled = paths.sum(0).mean(axis=(1, 2), keepdims=True)
    mix = jax.nn.relu(self.squeeze_norm(self.squeeze(pooled), use_running_average=not training))
    mix = jax.nn.softmax(jnp.stack(jnp.split(self.mixing(mix), 2, axis=-1)).astype(jnp.float32),
                         axis=0).astype(paths.dtype)
    return (paths * mix).sum(0)


class Block(nnx.Module):
  """A basic (two 3x3) or bottleneck (1x1, 3x3, 1x1 x4) residual block, torchvision v1.5."""

  def __init__(self, cin: int, width: int, stride: int, size: ResNetSize, *, rngs: nnx.Rngs,
               dtype=jnp.float32):
    self.bottleneck = size.bottleneck
    cout = width * 4 if size.bottleneck else width
    if size.bottleneck:
      self.conv1 = _conv(cin, width, 1, 1, rngs, dtype)
      self.norm1 = _norm(width, rngs, dtype)
      self.conv2 = (SelectiveKernel(width, width, stride, rngs=rngs, dtype=dtype)
                    if size.selective_kernel else _conv(width, width, 3, stride, rngs, dtype))
      self.norm2 = None if size.selective_kernel else _norm(width, rngs, dtype)
      self.conv3 = _conv(width, cout, 1, 1, rngs, dtype)
      self.norm3 = _norm(cout, rngs, dtype)
    else:
      self.conv1 = _conv(cin, width, 3, stride, rngs, dtype)
      self.norm1 = _norm(width, rngs, dtype)
      self.conv2 = _conv(width, width, 3, 1, rngs, dtype)
      self.norm2 = _norm(width, rngs, dtype)
    needs_projection = stride != 1 or cin != cout
    self.shortcut = _conv(cin, cout, 1, stride, rngs, dtype) if needs_projection else None
    self.shortcut_norm = _norm(cout, rngs, dtype) if needs_projection else None
    self.out_channels = cout

  def __call__(self, x: jax.Array, training: bool) -> jax.Array:
    bn = lambda norm, h: norm(h, use_running_average=not training)
    h = jax.nn.relu(bn(self.norm1, self.conv1(x)))
    if self.bottleneck:
      h = self.conv2(h, training) if self.norm2 is None else \
          jax.nn.relu(bn(self.norm2, self.conv2(h)))
      h = bn(self.norm3, self.conv3(h))
    else:
      h = bn(self.norm2, self.conv2(h))
    shortcut = x if self.shortcut is None else bn(self.shortcut_norm, self.shortcut(x))
    return jax.nn.relu(h + shortcut)


class ResNet(nnx.Module):
  """The trunk: stem, stages of blocks, global average pooling. Returns `(pre_logits, aux)`
  like `vit.ViT` (`aux["encoded"]` the last feature map); pre_logits are float32."""

  def __init__(self, variant: str, *, image_size: int, channels: int, stem: str = "imagenet",
               dtype=jnp.float32, rngs: nnx.Rngs):
    if stem not in ("imagenet", "small"):
      raise ValueError(f"config.model.stem must be 'imagenet' (7x7/2 conv + max pool) or "
                       f"'small' (3x3/1 conv, for 28x28-32x32 images); got {stem!r}.")
    self.size = resnet_size(variant)
    self.stem_kind = stem
    base = self.size.base_width * self.size.width_multiplier
    self.stem = _conv(channels, base, 7, 2, rngs, dtype) if stem == "imagenet" else \
        _conv(channels, base, 3, 1, rngs, dtype)
    self.stem_norm = _norm(base, rngs, dtype)
    blocks, cin = [], base
    for stage, count in enumerate(self.size.blocks):
      width = base * 2 ** stage
      for i in range(count):
        block = Block(cin, width, 2 if (i == 0 and stage > 0) else 1, self.size, rngs=rngs,
                      dtype=dtype)
        blocks.append(block)
        cin = block.out_channels
    self.blocks = nnx.List(blocks)
    self.width = cin
    del image_size  # any size the strides leave at least one pixel of works

  def __call__(self, images: jax.Array, key: jax.Array | None = None):
    training = key is not None
    x = vit.normalize_images(images)
    x = jax.nn.relu(self.stem_norm(self.stem(x), use_running_average=not training))
    if self.stem_kind == "imagenet":
      x = nnx.max_pool(x, window_shape=(3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    for block in self.blocks:
      x = block(x, training)
    pre_logits = precision.to_float32(x.mean(axis=(1, 2)))
    return pre_logits, {"encoded": x, "pre_logits": pre_logits}
