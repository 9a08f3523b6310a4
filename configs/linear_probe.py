"""Linear probe (MAE protocol): frozen pre-trained trunk, BatchNorm without affine + linear head,
LARS on ImageNet, AdamW on small data; a ViT's head reads the cls token (MAE's), of the last 4
blocks for ViT-S and narrower (DINO's). Point `--config.init_from` at a pre-training run
(e.g. runs/mae-XXXXXXXX).

Args as configs/finetune.py: a model, a data set, `labels=10%`; and `tokens` for a probe on
every patch token of a ViT (`model.pool="tokens"`) with that read-out's weight decay.
"""

import ml_collections

from configs import common, finetune
from mll_jax.models import vit

MODELS, DATA = finetune.MODELS, finetune.DATA

# The token read-out's weight decay (AdamW's, decoupled): a head of thousands of inputs per class
# on a few hundred images needs strong L2. Chosen on validation for `mini` at 10% labels, none
# elsewhere until measured (experiments/results/recipe_probe_token_wd_and_1pct.md).
TOKEN_WEIGHT_DECAY = {("animal_mnist", "mini"): {"10%": 8.0}}


def token_weight_decay(data: str, model: str, labels: str) -> float:
  """The token probe's weight decay for a data set (a DATA key) and model at a label fraction."""
  return TOKEN_WEIGHT_DECAY.get((data, model), {}).get(labels, 0.0)


# The pooled probe's read-out of a ViT: the cls token, as MAE's probe reads it, of the last 4
# blocks for ViT-S and narrower, as DINO's does (one block of a narrow encoder gives a linear
# head too few features), 1 from ViT-B on (chosen on validation: recipe_probe_read_blocks.md).
DINO_SMALL_WIDTH = 384  # ViT-S/16's width: DINO reads 4 blocks up to it, 1 above


def pooled_read_out(variant: str) -> dict:
  """`config.model` keys of the pooled probe of a ViT variant: `pool` and `read_blocks`."""
  size = vit.encoder_size(variant)
  return {"pool": "cls",
          "read_blocks": min(4, size.depth) if size.width <= DINO_SMALL_WIDTH else 1}


def get_config(arg=None):
  """Linear-probe config: the fine-tuning config with a frozen trunk and the probe's recipe."""
  arg_tokens = common.tokens(arg)
  read_tokens = "tokens" in arg_tokens
  arg = ",".join(t for t in arg_tokens if t != "tokens")
  c = finetune.get_config(arg)
  if read_tokens and c.model.family != "vit":
    raise ValueError("configs/linear_probe.py: `tokens` reads a ViT's patch tokens; "
                     f"{c.model.variant!r} is a {c.model.family}. Drop `tokens` to probe its "
                     "pooled features.")
  big = c.data.name == "imagenet2012"
  c.model.update(frozen_trunk=True, head_init_std=0.01)
  if c.model.family == "vit":  # a CNN trunk has its own BatchNorm statistics, frozen with it
    c.model.update(drop_path=0.0, head_norm="batchnorm", **pooled_read_out(c.model.variant))
  c.label_smoothing = 0.0
  c.mixup = 0.0
  c.data.crop_scale = (0.08, 1.0) if big else (0.7, 1.0)
  if not big and c.data.labels != "1%":
    # From 10% labels on, the small data sets' probe reads un-augmented images: a frozen
    # encoder's features of shifted images are not the test images', and a linear head cannot
    # learn the invariance; at 1% the shifted copies are the variety the head needs
    # (experiments/results/probe_features.md). ImageNet keeps MAE's crop and flip.
    c.data.augment = "none"
  c.num_epochs = 90.0 if big else finetune.budget_epochs(
      finetune.parse_arg(arg)[1], c.data.labels, pretrained=True)
  c.budget_sized_for.num_epochs = c.num_epochs
  c.warmup_epochs = 10.0 if big else finetune.warmup_epochs(finetune.parse_arg(arg)[1],
                                                           c.data.labels)
  c.batch_size = 16384 if big else 64
  # MAE: LARS, base lr 0.1 (x batch / 256), no weight decay, 90 epochs, 10 warm-up. LARS's trust
  # ratio barely moves a 0.01-std head in a few hundred steps, so small data gets AdamW, its rate
  # chosen on validation (experiments/results/recipe_probe_finetune.md).
  if big:
    c.optim.update(name="lars", base_lr=0.1)
  else:
    c.optim.update(name="adamw", base_lr=0.3)
  c.optim.update(weight_decay=0.0, layer_decay=1.0, freeze=("^encoder/",))
  if read_tokens:  # the last block's tokens: 49 x 96 numbers already for a `mini`
    c.model.update(pool="tokens", read_blocks=1)
    model, data, labels = finetune.parse_arg(arg)
    c.optim.weight_decay = token_weight_decay(data, model, labels)
  c.init_fresh = ("^head/",)  # the BatchNorm has no params; its statistics start fresh
  return ml_collections.ConfigDict(c)
