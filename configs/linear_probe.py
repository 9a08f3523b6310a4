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

# The token read-out's weight decay (AdamW's, decoupled), by (data set, model) and labels; 0
# elsewhere, until measured. 49 tokens x 96 numbers of a `mini` on 720 labelled images: a head
# of 4,704 inputs per class, which needs strong L2 as logistic regression on the same features
# did (best at C = 0.01, experiments/results/probe_features_by_block.md). Chosen on the
# validation holdout of the animal_mnist study's 100-epoch MAE, two seeds
# (experiments/results/recipe_probe_token_wd_and_1pct.md): at 10% labels decay 0 / 1 / 2 / 4 /
# 8 / 16 reached 0.796 / 0.819 / 0.822 / 0.825 / 0.833 / 0.832; at 1% decay cost accuracy
# (0 / 1 / 4: 0.726 / 0.703 / 0.708; the shifted copies already regularise); at 100% 0.1 was
# level with none (0.922 / 0.921) and 1.0 cost 0.007 (one seed). The reports of other models
# (the `tiny` study's token probes) keep the decay they were run with: none.
TOKEN_WEIGHT_DECAY = {("animal_mnist", "mini"): {"10%": 8.0}}


def token_weight_decay(data: str, model: str, labels: str) -> float:
  """The token probe's weight decay for a data set (a DATA key) and model at a label fraction."""
  return TOKEN_WEIGHT_DECAY.get((data, model), {}).get(labels, 0.0)


# The pooled probe's read-out of a ViT. MAE's linear probe reads the last block's cls token
# (main_linprobe.py: `global_pool` is False unless asked for; MAE pools only to fine-tune).
# DINO's reads the cls tokens of the last 4 blocks of a ViT-S/16, concatenated (eval_linear.py
# `n_last_blocks`: 4 for ViT-S, 1 for ViT-B and wider, whose one block holds enough features):
# one block of a narrow encoder gives a linear head too few. Chosen on the validation holdout
# of the animal_mnist study's 300-epoch `mini` MAE, two seeds
# (experiments/results/recipe_probe_read_blocks.md): at 100% labels the mean patch token of the
# last block (the earlier recipe) reached 0.907, its cls token 0.918, the cls tokens of the
# last 2 / 4 blocks 0.929 / 0.934 (1-NN on pixels: 0.919).
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
    # encoder's features of shifted doodles are not those of the test images, and a linear
    # head cannot learn the invariance. On the validation holdout
    # (experiments/results/probe_features.md, one seed, 800 images), a 30-epoch `mini` MAE's
    # pooled read-out at 100% labels reached 0.801 without augmentation against 0.768 shifted
    # (0.774 with 3x the passes, 0.754 / 0.738 at base lr 0.1 / 0.03), nearer logistic
    # regression's 0.826 on the clean features; the `tiny` encoder's token read-out 0.933
    # against 0.924; at 10% 0.730 / 0.823 against 0.729 / 0.828 (level). At 1% (72 images) the
    # shifted copies are the variety the head needs: without them the `tiny` encoder's pooled
    # probe fell from 0.665 / 0.648 to 0.590 / 0.589 (two seeds) and its token probe from
    # 0.619 / 0.696 to 0.540 / 0.618. ImageNet keeps MAE's crop and flip.
    c.data.augment = "none"
  c.num_epochs = 90.0 if big else finetune.budget_epochs(
      finetune.parse_arg(arg)[1], c.data.labels, pretrained=True)
  c.budget_sized_for.num_epochs = c.num_epochs
  c.warmup_epochs = 10.0 if big else finetune.warmup_epochs(finetune.parse_arg(arg)[1],
                                                           c.data.labels)
  c.batch_size = 16384 if big else 64
  # MAE: LARS, base lr 0.1 (x batch / 256), no weight decay, 90 epochs, 10 warm-up. LARS's
  # trust ratio scales steps by the weight norm, so from a 0.01-std head at batch 64 it barely
  # moves in a few hundred steps (0.24 test accuracy at 10% labels where ridge gets 0.66);
  # small data gets AdamW (first chosen among 7 short trials scored on test; redone on the
  # validation holdout, experiments/results/recipe_probe_finetune.md: base lr 0.03 / 0.1 /
  # 0.3 / 1.0 reached 0.713 / 0.733 / 0.746 / 0.753 at 10% labels, so 0.3 stays: within one
  # seed's noise of 1.0, with a steadier curve).
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
