"""Supervised classification: a ViT (or CNN) + linear head, label smoothing, optional mixup,
drop path.

With `config.init_from` set to an MAE run it is MAE fine-tuning (configs/finetune.py); set to a
SimCLR run with `config.model.projection_layers=1`, SimCLRv2's fine-tuning from the first layer
of the projection head; with a frozen trunk and a BatchNorm head it is the linear probe
(configs/linear_probe.py).
"""

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx

from mll_jax.data import sources
from mll_jax.models import cnn, heads, layer_plan, precision, vit


def classifier(m: ml_collections.ConfigDict, config: ml_collections.ConfigDict,
               info: sources.DatasetInfo,
               rngs: nnx.Rngs) -> heads.Classifier | cnn.CNNClassifier:
  """The classifier that the model config `m` (`config.model`, or a teacher's) describes:
  a ViT (`m.family="vit"`, the default) or a CNN (`m.family="cnn"`, `m.variant` a CNN size)."""
  family = m.get("family", "vit")
  execution = layer_plan.execution(m)
  if family == "cnn":
    if m.get("head_norm", ""):
      raise ValueError("config.model.head_norm is a ViT option; a CNN classifier has none "
                       "(its trunk has BatchNorm).")
    if execution["layers"] != layer_plan.PLAIN:
      raise ValueError("config.model.remat and config.model.scan_layers are transformer "
                       "options; a CNN has no block stack to rematerialise or scan. Leave "
                       "them at 'none' and False.")
    return cnn.CNNClassifier(m.variant, num_classes=info.num_classes,
                             image_size=config.data.image_size, channels=config.data.channels,
                             head_init_std=m.get("head_init_std", 0.01),
                             frozen_trunk=m.get("frozen_trunk", False),
                             stem=m.get("stem", "imagenet"),
                             projection_layers=m.get("projection_layers", 0),
                             proj_hidden=m.get("proj_hidden", 512), dtype=execution["dtype"],
                             rngs=rngs)
  if family != "vit":
    raise ValueError(f"config.model.family must be 'vit' or 'cnn', got {family!r}.")
  model = heads.Classifier(
      m.variant, num_classes=info.num_classes, image_size=config.data.image_size,
      channels=config.data.channels, patch_size=m.get("patch_size") or None,
      pool=m.get("pool", "gap"), drop_path_rate=m.get("drop_path", 0.0),
      head_init_std=m.get("head_init_std", 2e-5), head_norm=m.get("head_norm", ""),
      frozen_trunk=m.get("frozen_trunk", False), posemb=m.get("posemb", "sincos"),
      fc_norm=m.get("fc_norm", False), qkv_bias=m.get("qkv_bias", True),
      read_blocks=m.get("read_blocks", 1), projection_layers=m.get("projection_layers", 0),
      proj_hidden=m.get("proj_hidden", 512),
      **execution, rngs=rngs)
  return precision.with_matmul_policy(model, m.get("dtype", "auto"))


def make_model(config: ml_collections.ConfigDict, info: sources.DatasetInfo,
               rngs: nnx.Rngs) -> heads.Classifier:
  """A classifier over the data set's classes as `config.model` describes."""
  return classifier(config.model, config, info, rngs)


def _mixup(images, targets, alpha: float, key):
  """Convex combination of each example with a random partner (images and targets alike)."""
  k_lam, k_perm = jax.random.split(key)
  lam = jax.random.beta(k_lam, alpha, alpha)
  perm = jax.random.permutation(k_perm, images.shape[0])
  images = vit.normalize_images(images)  # mix in the model's float space, not in uint8
  return lam * images + (1 - lam) * images[perm], lam * targets + (1 - lam) * targets[perm]


def loss(model: heads.Classifier | cnn.CNNClassifier, batch: dict, key: jax.Array, config):
  """Cross-entropy against smoothed (and optionally mixed-up) one-hot targets."""
  logits_count = model.head.out_features
  targets = optax.smooth_labels(jax.nn.one_hot(batch["label"], logits_count),
                                config.get("label_smoothing", 0.0))
  images = batch["image"]
  k_mix, k_drop = jax.random.split(key)
  if config.get("mixup", 0.0) > 0:
    images, targets = _mixup(images, targets, config.mixup, k_mix)
  logits, _ = model(images, k_drop)
  value = optax.softmax_cross_entropy(logits, targets).mean()
  accuracy = (logits.argmax(-1) == batch["label"]).mean()
  return value, {"loss": value, "accuracy": accuracy}


def eval_loss(model: heads.Classifier, batch: dict, key: jax.Array) -> jax.Array:
  """Plain cross-entropy of the deterministic model."""
  del key
  logits, _ = model(batch["image"])
  return optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()


def logits(model: heads.Classifier, images: jax.Array) -> jax.Array:
  """Class scores of the deterministic model (no drop path)."""
  return model(images)[0]


def features(model: heads.Classifier, images: jax.Array) -> jax.Array:
  """The pooled encoder representation in front of the head."""
  return model.encoder(images)[0]
