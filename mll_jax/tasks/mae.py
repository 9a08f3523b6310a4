"""Masked-autoencoder pre-training: model from config, loss, and the encoder's features."""

import jax
import ml_collections
from flax import nnx

from mll_jax.data import sources
from mll_jax.models import layer_plan, precision
from mll_jax.models import mae as mae_model


def make_model(config: ml_collections.ConfigDict, info: sources.DatasetInfo,
               rngs: nnx.Rngs) -> mae_model.MAE:
  """The MAE described by `config.model` for images of `config.data.image_size`."""
  del info  # The MAE needs no labels.
  m = config.model
  model = mae_model.MAE(
      m.variant, image_size=config.data.image_size, channels=config.data.channels,
      patch_size=m.get("patch_size") or None, decoder=m.decoder, mask_ratio=m.mask_ratio,
      norm_pix_loss=m.norm_pix_loss, **layer_plan.execution(m), rngs=rngs)
  return precision.with_matmul_policy(model, m.get("dtype", "auto"))


def loss(model: mae_model.MAE, batch: dict, key: jax.Array, config=None):
  """Reconstruction loss on masked patches of `batch["image"]`, masks drawn from `key`."""
  del config  # Everything the MAE needs is in the model.
  value, _ = model(batch["image"], key)
  return value, {"loss": value}


def eval_loss(model: mae_model.MAE, batch: dict, key: jax.Array) -> jax.Array:
  """The held-out objective: the same reconstruction loss, masks drawn from `key`."""
  return loss(model, batch, key)[0]


def features(model: mae_model.MAE, images: jax.Array) -> jax.Array:
  """The encoder's pooled representation of unmasked images (what evaluators probe)."""
  pre_logits, _ = model.encoder(images)
  return pre_logits
