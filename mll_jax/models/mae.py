"""Masked autoencoder (He et al. 2021) in Flax NNX, with the reference code's semantics.

Per image, uniform noise is argsorted and the first `(1 - mask_ratio)` fraction of patches is
kept, so shapes stay static under jit; `ids_restore` unshuffles for the decoder. The decoder has
its own width, a shared learned mask token and fixed sin-cos positions, and predicts the pixels
of every patch; the loss counts masked patches only.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from mll_jax.models import layer_plan, posembed, precision, vit

DECODER_SIZES = {
    "mu": vit.Size(width=32, depth=1, heads=2, mlp_dim=64),
    "tiny": vit.Size(width=128, depth=2, heads=4, mlp_dim=512),
    # The tiny decoder's width at the paper's depth: MAE's ablation (Table 1a) gains 8 points
    # of linear probing from depth 1 to 8 (fine-tuning barely moves), since a shallow decoder
    # leaves the encoder's last blocks to specialise in reconstruction. On animal_mnist's
    # holdout it moved the `mini` encoder's pooled read-out by +0.009 / +0.013 only (10% / 100%
    # labels, experiments/results/probe_features.md); width and pre-training length did more.
    "tiny_deep": vit.Size(width=128, depth=8, heads=4, mlp_dim=512),
    "standard": vit.Size(width=512, depth=8, heads=16, mlp_dim=2048),  # the paper's decoder
}


@jax.custom_vjp
def permute_tokens(tokens: jax.Array, order: jax.Array, inverse: jax.Array) -> jax.Array:
  """`tokens[b, order[b]]` for a per-image permutation `order` whose inverse is `inverse`.

  Autodiff would turn the gather's gradient into a scatter-add, which XLA:CPU runs as a slow
  serial loop (it made the MAE backward pass 4.8x its forward). The gradient of a permutation
  is the inverse permutation, so the backward pass is another gather.
  """
  return jnp.take_along_axis(tokens, order[:, :, None], axis=1)


def _permute_fwd(tokens, order, inverse):
  return permute_tokens(tokens, order, inverse), (order, inverse)


def _permute_bwd(residuals, grad):
  order, inverse = residuals
  return jnp.take_along_axis(grad, inverse[:, :, None], axis=1), None, None


permute_tokens.defvjp(_permute_fwd, _permute_bwd)


def random_masking(tokens: jax.Array, mask_ratio: float, key: jax.Array):
  """Keeps a random `1 - mask_ratio` fraction of the tokens of each image.

  Returns `(kept_tokens, mask, ids_restore, ids_shuffle)`; `mask` is 1 for removed patches,
  in the original patch order; `ids_restore` undoes the shuffle `ids_shuffle`.
  """
  batch, length, _ = tokens.shape
  keep = int(length * (1 - mask_ratio))
  if keep < 1:
    raise ValueError(f"mask_ratio {mask_ratio} leaves no visible patch out of {length}.")
  noise = jax.random.uniform(key, (batch, length))
  ids_shuffle = jnp.argsort(noise, axis=1)
  ids_restore = jnp.argsort(ids_shuffle, axis=1)
  kept = permute_tokens(tokens, ids_shuffle, ids_restore)[:, :keep]
  mask = jnp.ones((batch, length)).at[:, :keep].set(0.0)
  mask = jnp.take_along_axis(mask, ids_restore, axis=1)
  return kept, mask, ids_restore, ids_shuffle


def reconstruction_loss(pred: jax.Array, target: jax.Array, mask: jax.Array,
                        norm_pix_loss: bool) -> jax.Array:
  """Mean squared error over masked patches: `sum(loss * mask) / sum(mask)`.

  `norm_pix_loss` normalises each target patch by its own mean and unbiased variance, as
  facebookresearch/mae's `forward_loss` does with torch's `.var(dim=-1)` (divisor n - 1).
  """
  if norm_pix_loss:
    mean = target.mean(axis=-1, keepdims=True)
    var = target.var(axis=-1, ddof=1, keepdims=True)
    target = (target - mean) / jnp.sqrt(var + 1e-6)
  per_patch = jnp.mean((pred - target) ** 2, axis=-1)
  return jnp.sum(per_patch * mask) / jnp.sum(mask)


class MAE(nnx.Module):
  """ViT encoder + lightweight decoder; `__call__` returns `(loss, aux)`. `dtype` and `layers`
  apply to encoder and decoder alike; predictions and the loss are float32."""

  def __init__(self, variant: str, *, image_size: int, channels: int,
               patch_size: int | None = None, decoder: str = "standard",
               mask_ratio: float = 0.75, norm_pix_loss: bool = True, dtype=jnp.float32,
               layers: layer_plan.LayerPlan = layer_plan.PLAIN, rngs: nnx.Rngs):
    if decoder not in DECODER_SIZES:
      raise ValueError(f"Unknown decoder {decoder!r}; known: {', '.join(DECODER_SIZES)}.")
    if not 0.0 <= mask_ratio < 1.0:
      raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}.")
    self.encoder = vit.ViT(variant, image_size=image_size, channels=channels,
                           patch_size=patch_size, dtype=dtype, layers=layers, rngs=rngs)
    dec = DECODER_SIZES[decoder]
    self.decoder_width = dec.width
    self.mask_ratio = mask_ratio
    self.norm_pix_loss = norm_pix_loss
    patch = self.encoder.patch_size
    self.decoder_embed = vit._xavier_linear(self.encoder.size.width, dec.width, rngs, dtype)
    self.mask_token = nnx.Param(nnx.initializers.normal(0.02)(rngs.params(), (1, 1, dec.width)))
    self.decoder = vit.Transformer(dec, dtype=dtype, layers=layers, rngs=rngs)
    self.decoder_pred = vit._xavier_linear(dec.width, patch * patch * channels, rngs, dtype)

  def decode(self, encoded: jax.Array, ids_restore: jax.Array,
             ids_shuffle: jax.Array) -> jax.Array:
    """Encoded visible tokens (with cls) -> predicted pixels of every patch."""
    x = self.decoder_embed(encoded)
    batch, length = ids_restore.shape
    masked = jnp.broadcast_to(self.mask_token[...].astype(x.dtype),
                              (batch, length + 1 - x.shape[1], x.shape[2]))
    patches = jnp.concatenate([x[:, 1:], masked], axis=1)
    patches = permute_tokens(patches, ids_restore, ids_shuffle)
    x = jnp.concatenate([x[:, :1], patches], axis=1)
    grid = self.encoder.grid
    x = x + jnp.asarray(posembed.sincos_2d(grid, grid, self.decoder_width, with_cls=True),
                        x.dtype)
    return precision.to_float32(self.decoder_pred(self.decoder(x))[:, 1:])

  def __call__(self, images: jax.Array, mask_key: jax.Array):
    tokens = self.encoder.embed_patches(images)
    kept, mask, ids_restore, ids_shuffle = random_masking(tokens, self.mask_ratio, mask_key)
    encoded = self.encoder.encode_tokens(kept)
    pred = self.decode(encoded, ids_restore, ids_shuffle)
    target = vit.patchify(vit.normalize_images(images), self.encoder.patch_size)
    loss = reconstruction_loss(pred, target, mask, self.norm_pix_loss)
    return loss, {"pred": pred, "mask": mask, "encoded": encoded}
