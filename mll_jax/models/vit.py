"""Vision Transformer encoder (Flax NNX) with named size variants.

The layout follows timm / the MAE release (fused qkv projection, pre-norm blocks, exact GELU,
cls token), so published PyTorch weights map onto it one to one.
"""

import dataclasses

import einops
import jax
import jax.numpy as jnp
from flax import nnx

from mll_jax.models import attention, gelu, layer_plan, layernorm, posembed, precision


@dataclasses.dataclass(frozen=True)
class Size:
  """Width, depth, heads, MLP width and default patch size of a transformer stack."""
  width: int
  depth: int
  heads: int
  mlp_dim: int
  patch_size: int = 16


# `mu` exists for tests (compiles in a second); `tiny` is the offline default on 28x28 images.
ENCODER_SIZES = {
    "mu": Size(width=32, depth=2, heads=2, mlp_dim=64, patch_size=4),
    "mini": Size(width=96, depth=4, heads=3, mlp_dim=384, patch_size=4),  # a small student
    "tiny": Size(width=192, depth=6, heads=3, mlp_dim=768, patch_size=4),
    "S/16": Size(width=384, depth=12, heads=6, mlp_dim=1536, patch_size=16),
    "B/16": Size(width=768, depth=12, heads=12, mlp_dim=3072, patch_size=16),
    "L/16": Size(width=1024, depth=24, heads=16, mlp_dim=4096, patch_size=16),
    "H/14": Size(width=1280, depth=32, heads=16, mlp_dim=5120, patch_size=14),
}


def encoder_size(variant: "str | Size") -> Size:
  """Looks a named encoder size up, with a message listing the known names. A `Size` passes
  through, so imported checkpoints of any shape can be rebuilt from Python."""
  if isinstance(variant, Size):
    return variant
  if variant not in ENCODER_SIZES:
    raise ValueError(f"Unknown model variant {variant!r}; known variants: "
                     f"{', '.join(ENCODER_SIZES)}.")
  return ENCODER_SIZES[variant]


def normalize_images(images: jax.Array) -> jax.Array:
  """uint8 images in [0, 255] become float32 in [-1, 1]; float images pass unchanged.

  Pipelines ship uint8 to the device (4x less host-to-device traffic) and the model converts.
  """
  if images.dtype == jnp.uint8:
    return images.astype(jnp.float32) / 127.5 - 1.0
  return images


def patchify(images: jax.Array, patch_size: int) -> jax.Array:
  """`[B, H, W, C]` -> `[B, (H/p)*(W/p), p*p*C]`, row-major over patches (MAE's order)."""
  return einops.rearrange(images, "b (h p) (w q) c -> b (h w) (p q c)", p=patch_size, q=patch_size)


def check_image_size(image_size: int, patch_size: int) -> None:
  """Raises a clear error when the image does not split into whole patches."""
  if image_size % patch_size:
    raise ValueError(
        f"Image size {image_size} is not divisible by the patch size {patch_size}. Choose an "
        f"image size that is a multiple of {patch_size} (config.data.image_size) or another "
        f"patch size (config.model.patch_size).")


def _xavier_linear(fan_in: int, fan_out: int, rngs: nnx.Rngs,
                   dtype=jnp.float32) -> nnx.Linear:
  """A linear layer with float32 parameters computing in `dtype`."""
  return precision.Linear(fan_in, fan_out, kernel_init=nnx.initializers.xavier_uniform(),
                          bias_init=nnx.initializers.zeros_init(), dtype=dtype, rngs=rngs)


class Attention(nnx.Module):
  """Multi-head self-attention with a fused qkv projection (timm layout); `qkv_bias=False`
  as timm's `VisionTransformer(qkv_bias=False)`."""

  def __init__(self, width: int, heads: int, *, qkv_bias: bool = True, dtype=jnp.float32,
               implementation: str | None = None, rngs: nnx.Rngs):
    self.heads = heads
    self.implementation = implementation  # attention.implementation_for's kernel choice
    self.qkv = precision.Linear(width, 3 * width, use_bias=qkv_bias,
                                kernel_init=nnx.initializers.xavier_uniform(),
                                bias_init=nnx.initializers.zeros_init(), dtype=dtype, rngs=rngs)
    self.proj = _xavier_linear(width, width, rngs, dtype)

  def __call__(self, x: jax.Array) -> jax.Array:
    out = attention.multi_head_attention(self.qkv(x), self.heads, self.implementation)
    return self.proj(out)


def drop_path(x: jax.Array, rate: "float | jax.Array", key: jax.Array | None) -> jax.Array:
  """Stochastic depth: drops a residual branch per example with probability `rate`.

  A function of an explicit key (None at evaluation), so models stay pure and a resumed run
  draws the same drops.
  """
  if key is None or (isinstance(rate, float) and rate == 0.0):
    return x
  keep = jax.random.bernoulli(key, 1.0 - rate, (x.shape[0],) + (1,) * (x.ndim - 1))
  # The rate may be a traced float32 (a scanned stack's): keep x in its own dtype.
  return jnp.where(keep, x / jnp.asarray(1.0 - rate, x.dtype), jnp.zeros((), x.dtype))


class Block(nnx.Module):
  """Pre-norm transformer block: x + attn(ln(x)), then x + mlp(ln(x)), with drop path."""

  def __init__(self, width: int, heads: int, mlp_dim: int, *, drop_path_rate: float = 0.0,
               qkv_bias: bool = True, dtype=jnp.float32, attention: str | None = None,
               rngs: nnx.Rngs):
    self.drop_path_rate = drop_path_rate
    # LayerNorm statistics are float32 whatever `dtype` (layernorm.layer_norm computes them so).
    self.norm1 = layernorm.LayerNorm(width, epsilon=1e-6, dtype=dtype, rngs=rngs)
    self.attn = Attention(width, heads, qkv_bias=qkv_bias, dtype=dtype,
                          implementation=attention, rngs=rngs)
    self.norm2 = layernorm.LayerNorm(width, epsilon=1e-6, dtype=dtype, rngs=rngs)
    self.fc1 = _xavier_linear(width, mlp_dim, rngs, dtype)
    self.fc2 = _xavier_linear(mlp_dim, width, rngs, dtype)

  def __call__(self, x: jax.Array, key: jax.Array | None = None,
               rate: "float | jax.Array | None" = None) -> jax.Array:
    """`rate` overrides the block's drop-path rate (a scanned stack passes each layer's)."""
    rate = self.drop_path_rate if rate is None else rate
    keys = jax.random.split(key) if key is not None else (None, None)
    x = x + drop_path(self.attn(self.norm1(x)), rate, keys[0])
    mlp = self.fc2(gelu.gelu(self.fc1(self.norm2(x))))
    return x + drop_path(mlp, rate, keys[1])


class Transformer(nnx.Module):
  """A stack of blocks followed by a final LayerNorm (none with `final_norm=False`, when the
  model normalises after pooling instead); drop path grows linearly with depth.

  `layers` (a `layer_plan.LayerPlan`) says how the blocks run: rematerialised or not, with
  which attention kernel, and as a Python loop over `blocks/0..depth-1` or one `nnx.scan` over
  blocks stacked on a leading axis (`blocks/...` of shape `[depth, ...]`). Both layouts compute
  the same function; `layer_plan.stack_blocks` / `unstack_blocks` convert checkpoints.
  """

  def __init__(self, size: Size, *, drop_path_rate: float = 0.0, qkv_bias: bool = True,
               final_norm: bool = True, dtype=jnp.float32,
               layers: "layer_plan.LayerPlan" = layer_plan.PLAIN, rngs: nnx.Rngs):
    self.rates = tuple(drop_path_rate * i / max(size.depth - 1, 1) for i in range(size.depth))
    self.layers = layers
    make_block = lambda rate, block_rngs: Block(
        size.width, size.heads, size.mlp_dim, drop_path_rate=rate, qkv_bias=qkv_bias,
        dtype=dtype, attention=layers.attention_implementation, rngs=block_rngs)
    if layers.scan:
      # One block's graph with every parameter stacked on a leading `depth` axis; the per-layer
      # drop-path rates go in as a scanned input instead of a per-block constant.
      self.blocks = layer_plan.stacked(lambda r: make_block(0.0, r), size.depth, rngs)
    else:
      self.blocks = nnx.List([make_block(rate, rngs) for rate in self.rates])
    self.norm = layernorm.LayerNorm(size.width, epsilon=1e-6, dtype=dtype, rngs=rngs) \
        if final_norm else None

  def __call__(self, x: jax.Array, key: jax.Array | None = None) -> jax.Array:
    return self.block_outputs(x, key, last=1)[0]

  def block_outputs(self, x: jax.Array, key: jax.Array | None = None,
                    last: int = 1) -> list[jax.Array]:
    """The outputs of the last `last` blocks, oldest first, each through the final LayerNorm
    (as DINO's `get_intermediate_layers` reads them); `last=1` is the stack's output."""
    depth = len(self.rates)
    keys = jax.random.split(key, depth) if key is not None else None
    if self.layers.scan:
      scanned = layer_plan.scan_blocks(self.blocks, x, keys, jnp.asarray(self.rates),
                                       self.layers, keep_outputs=last > 1)
      outputs = [scanned] if last == 1 else list(scanned[1][depth - last:])
    else:
      run = layer_plan.rematerialised(lambda block, h, k: block(h, k), self.layers)
      outputs = []
      for i, block in enumerate(self.blocks):
        x = run(block, x, None if keys is None else keys[i])
        if i >= depth - last:
          outputs.append(x)
    return outputs if self.norm is None else [self.norm(o) for o in outputs]


POOLS = ("gap", "cls", "tokens")  # ViT(pool=...): how `pre_logits` reads the tokens


class ViT(nnx.Module):
  """ViT encoder: patch embedding, fixed sin-cos positions, cls token, transformer.

  Calling it returns `(pre_logits, aux)`; `aux["encoded"]` holds all output tokens and
  `aux["pre_logits"]` the pooled representation (`pool="gap"` averages patch tokens, as MAE's
  fine-tuning does; `pool="cls"` takes the cls token; `pool="tokens"` keeps every patch token,
  flattened to `width * num_patches` numbers: a linear probe on it sees where each part of the
  image is, which the mean throws away, experiments/results/probe_features.md). `features` is
  the length of `pre_logits`.

  `read_blocks=N` concatenates that read-out of each of the last N blocks, each through the
  final LayerNorm, oldest first: DINO's linear-probe protocol for small ViTs (`n_last_blocks=4`
  for ViT-S/16; 1 for ViT-B), where one block's few features are too few for a linear head.

  `fc_norm=True` moves the final LayerNorm behind the pooling: the tokens leave the transformer
  unnormalised and the pooled vector is normalised (`fc_norm`), as in timm's
  `global_pool="avg"` (its default `fc_norm`) and MAE's fine-tuning (`global_pool=True`).

  `dtype` is the compute dtype (`precision.compute_dtype`); parameters are float32 always.
  `layers` sets remat and scan (`layer_plan`).
  """

  def __init__(self, variant: "str | Size", *, image_size: int, channels: int,
               patch_size: int | None = None, pool: str = "gap", drop_path_rate: float = 0.0,
               posemb: str = "sincos", fc_norm: bool = False, qkv_bias: bool = True,
               dtype=jnp.float32, layers: layer_plan.LayerPlan = layer_plan.PLAIN,
               read_blocks: int = 1, rngs: nnx.Rngs):
    self.size = encoder_size(variant)
    self.dtype = dtype
    self.patch_size = patch_size or self.size.patch_size
    check_image_size(image_size, self.patch_size)
    if pool not in POOLS:
      raise ValueError(f"config.model.pool must be one of {', '.join(POOLS)}, got {pool!r}.")
    if not (isinstance(read_blocks, int) and 1 <= read_blocks <= self.size.depth):
      raise ValueError(f"config.model.read_blocks must be a whole number of blocks from 1 to "
                       f"the encoder's depth ({self.size.depth}); got {read_blocks!r}.")
    self.grid = image_size // self.patch_size
    self.pool = pool
    self.read_blocks = read_blocks
    self.patch_embed = _xavier_linear(self.patch_size ** 2 * channels, self.size.width, rngs,
                                      dtype)
    self.cls_token = nnx.Param(nnx.initializers.normal(0.02)(rngs.params(), (1, 1, self.size.width)))
    if posemb not in ("sincos", "learn"):
      raise ValueError(f"posemb must be 'sincos' (MAE) or 'learn' (timm ViTs), got {posemb!r}.")
    # Learned positions (cls row first), as timm's ViTs have; MAE's are fixed sin-cos.
    self.pos_embedding = (nnx.Param(nnx.initializers.normal(0.02)(
        rngs.params(), (1, self.grid * self.grid + 1, self.size.width)))
        if posemb == "learn" else None)
    self.transformer = Transformer(self.size, drop_path_rate=drop_path_rate, qkv_bias=qkv_bias,
                                   final_norm=not fc_norm, dtype=dtype, layers=layers, rngs=rngs)
    self.fc_norm = layernorm.LayerNorm(self.size.width, epsilon=1e-6, dtype=dtype, rngs=rngs) \
        if fc_norm else None

  @property
  def num_patches(self) -> int:
    return self.grid * self.grid

  @property
  def features(self) -> int:
    """Length of the pooled `pre_logits`."""
    return (self.size.width * (self.num_patches if self.pool == "tokens" else 1)
            * self.read_blocks)

  def position_table(self) -> jax.Array:
    """Position embeddings (fixed or learned), row 0 for the cls token."""
    if self.pos_embedding is not None:
      return self.pos_embedding[...][0]
    return jnp.asarray(posembed.sincos_2d(self.grid, self.grid, self.size.width, with_cls=True))

  def embed_patches(self, images: jax.Array) -> jax.Array:
    """Images -> patch tokens with their position embeddings (no cls token)."""
    patches = patchify(normalize_images(images), self.patch_size)
    # The float32 position table would promote the tokens back to float32.
    return (self.patch_embed(patches) + self.position_table()[1:]).astype(self.dtype)

  def prepend_cls(self, tokens: jax.Array) -> jax.Array:
    """Patch tokens -> the transformer's input: the cls token (with its position) first."""
    cls = self.cls_token[...] + self.position_table()[:1]
    cls = jnp.broadcast_to(cls, (tokens.shape[0], 1, tokens.shape[-1])).astype(tokens.dtype)
    return jnp.concatenate([cls, tokens], axis=1)

  def encode_tokens(self, tokens: jax.Array, key: jax.Array | None = None) -> jax.Array:
    """Prepends the cls token (with its position) and runs the transformer."""
    return self.transformer(self.prepend_cls(tokens), key)

  def read_out(self, encoded: jax.Array) -> jax.Array:
    """One block's output tokens -> its `pool` read-out, flat, through `fc_norm` if any."""
    pooled = {"gap": lambda: encoded[:, 1:].mean(axis=1), "cls": lambda: encoded[:, 0],
              "tokens": lambda: encoded[:, 1:]}[self.pool]()
    if self.fc_norm is not None:  # per token for pool="tokens"
      pooled = self.fc_norm(pooled)
    return pooled.reshape(pooled.shape[0], -1)

  def __call__(self, images: jax.Array, key: jax.Array | None = None):
    """`key` enables drop path (training); None is the deterministic evaluation mode. The
    pooled `pre_logits` come back float32 whatever the compute dtype (heads, probes and
    losses read them); `encoded` (the last block's tokens) stays in the compute dtype."""
    outputs = self.transformer.block_outputs(self.prepend_cls(self.embed_patches(images)), key,
                                             last=self.read_blocks)
    pre_logits = jnp.concatenate([self.read_out(o) for o in outputs], axis=-1)
    pre_logits = precision.to_float32(pre_logits)
    return pre_logits, {"encoded": outputs[-1], "pre_logits": pre_logits}
