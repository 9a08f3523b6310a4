"""SimCLR: two augmented views of each image, NT-Xent over the global batch.

The loss is computed on the jitted global batch, so every view's negatives are all other views
in the batch across all devices (XLA gathers the projections); no per-device approximation.
"""

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx

from mll_jax.data import sources
from mll_jax.models import contrastive, layer_plan, precision


def make_model(config: ml_collections.ConfigDict, info: sources.DatasetInfo,
               rngs: nnx.Rngs) -> contrastive.Contrastive:
  """Encoder + projection head as `config.model` says (`family`: vit or cnn)."""
  del info
  m = config.model
  execution = layer_plan.execution(m)
  family = m.get("family", "vit")
  if family != "vit" and execution["layers"] != layer_plan.PLAIN:
    raise ValueError("config.model.remat, scan_layers and attention are transformer options; "
                     "leave them at their defaults for a convolutional trunk.")
  model = contrastive.Contrastive(
      m.variant, image_size=config.data.image_size, channels=config.data.channels,
      family=family, patch_size=m.get("patch_size") or None, stem=m.get("stem", "imagenet"),
      proj_hidden=m.proj_hidden, proj_dim=m.proj_dim, proj_depth=m.proj_depth,
      dtype=execution["dtype"], layers=execution["layers"], rngs=rngs)
  return precision.with_matmul_policy(model, m.get("dtype", "auto"))


def nt_xent(z1: jax.Array, z2: jax.Array, temperature: float):
  """Normalised-temperature cross-entropy; `(loss, accuracy of finding the positive)`."""
  z = jnp.concatenate([z1, z2], axis=0)
  z = z / jnp.linalg.norm(z, axis=-1, keepdims=True).clip(1e-12)
  n = z1.shape[0]
  logits = (z @ z.T) / temperature
  logits = jnp.where(jnp.eye(2 * n, dtype=bool), -jnp.inf, logits)  # a view is not its own pair
  positives = jnp.concatenate([jnp.arange(n, 2 * n), jnp.arange(n)])
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, positives).mean()
  return loss, (logits.argmax(-1) == positives).mean()


def loss(model: contrastive.Contrastive, batch: dict, key: jax.Array, config):
  """NT-Xent between the projections of `image` and `image_view2`.

  Both views go through the encoder as one batch, as in SimCLRv2's code, so a ResNet's
  BatchNorm normalises over all 2N views (for a ViT it is the same as two calls)."""
  if "image_view2" not in batch:
    raise ValueError("The simclr task needs two views: set config.data.views = 2.")
  views = jnp.concatenate([batch["image"], batch["image_view2"]], axis=0)
  z, _ = model(views, key)
  z1, z2 = jnp.split(z, 2, axis=0)
  value, accuracy = nt_xent(z1, z2, config.temperature)
  return value, {"loss": value, "contrastive_accuracy": accuracy}


def features(model: contrastive.Contrastive, images: jax.Array) -> jax.Array:
  """The encoder's pooled representation (before the projection head)."""
  return model.encoder(images)[0]
