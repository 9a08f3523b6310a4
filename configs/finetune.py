"""Supervised fine-tuning (or training from scratch) of a ViT classifier, or training of the
small CNN family (`cnn_mu`, `cnn_s`, `cnn_m`: the reference baseline, and CNN hub experts).

Default: the `tiny` ViT on 10% of animal_mnist's training labels, from scratch. To fine-tune
an MAE run: `--config.init_from=runs/mae-XXXXXXXX` (the encoder loads; the head starts fresh).
A SimCLR run as SimCLRv2 does, from the first layer of its projection head:
`--config.init_from=runs/simclr-XXXXXXXX --config.model.projection_layers=1`.
Args (comma-separated): a model (mu, tiny, vit_b16, ...), a data set (as configs/mae.py), and
`labels=1%` / `labels=10%` / `labels=k=5` / `labels=100%`.
"""

import ml_collections

from configs import common
from mll_jax.models import layer_plan, resnet

MODELS = {"mu": ("mu", 4), "mini": ("mini", 4), "tiny": ("tiny", 4), "vit_s16": ("S/16", 16),
          "vit_b16": ("B/16", 16), "vit_l16": ("L/16", 16), "vit_h14": ("H/14", 14),
          "cnn_mu": ("cnn_mu", 0), "cnn_s": ("cnn_s", 0), "cnn_m": ("cnn_m", 0)}
DATA = common.DATA


# Augmentation by data set: digits and animal_mnist's 28x28 doodles are shifted, never flipped
# or cropped hard (chosen on validation: experiments/results/recipe_probe_scratch.md).
AUGMENT = {"digits": "shift", "mnist": "shift", "animal_mnist": "shift"}
# Horizontal flips where labels are few, as mirrored animals are variety a few labels lack; not
# at 100% (recipe_probe_expert_flips.md) nor for digits (recipe_probe_vit_flips.md).
FEW_LABEL_AUGMENT = {"animal_mnist": {"1%": "shift+flip", "10%": "shift+flip"}}


def augment_for(data: str, labels: str) -> str:
  """Default training augmentation of a data set (a DATA key) at a label fraction."""
  return FEW_LABEL_AUGMENT.get(data, {}).get(labels) or AUGMENT.get(data, "crop+flip")


# Budgets in passes over the labelled subset: fewer labels need more passes, a pre-trained encoder
# fewer; sized where validation curves flatten (recipe_probe_finetune.md, recipe_probe_mnist.md).
EPOCHS = {
    "animal_mnist": {"scratch": {"1%": 600.0, "10%": 150.0, "100%": 40.0},
                     "pretrained": {"1%": 300.0, "10%": 60.0, "100%": 20.0}},
    "mnist": {"scratch": {"1%": 200.0, "10%": 40.0, "100%": 6.0},
              "pretrained": {"1%": 100.0, "10%": 15.0, "100%": 6.0}},
}


# Warm-up passes: 5, except where 5 passes would outlast the run (MNIST at 100% labels takes 6).
WARMUP_EPOCHS = {"mnist": {"100%": 0.5}}


def warmup_epochs(data: str, labels: str) -> float:
  """Default warm-up passes for a labelled subset of a small data set (see WARMUP_EPOCHS)."""
  return WARMUP_EPOCHS.get(data, {}).get(labels, 5.0)


def budget_epochs(data: str, labels: str, pretrained: bool) -> float:
  """Default passes over a labelled subset of a small data set (`data` a DATA key; `labels`
  "1%", "10%" or "100%"; any other subset gets the 10% budget, other data sets
  animal_mnist's)."""
  table = EPOCHS.get(data, EPOCHS["animal_mnist"])["pretrained" if pretrained else "scratch"]
  return table.get(labels, table["10%"])


def pretrained_overrides(data: str, labels: str, model: str = "mini") -> dict:
  """What fine-tuning from a pre-trained encoder changes in this recipe on the small data sets
  (`--config.init_from=...` plus these), chosen on the validation holdout.

  A ViT: fewer passes, a higher rate, and MAE's layer-wise decay, which keeps the early blocks
  near their pre-trained values (experiments/results/recipe_probe_finetune.md). A CNN (`model`
  of the convolutional family): the from-scratch budget and rate, with no layer-wise decay,
  which did better than the ViT's changes there (experiments/results/recipe_probe_cnn.md)."""
  if is_cnn(model):
    return {"num_epochs": budget_epochs(data, labels, pretrained=False),
            "optim.layer_decay": 1.0}
  return {"num_epochs": budget_epochs(data, labels, pretrained=True), "optim.base_lr": 4e-3,
          "optim.layer_decay": 0.75}


def parse_arg(arg):
  """`(model, data, labels)` of a config arg (see the module docstring)."""
  model, data, labels = "tiny", "animal_mnist", "10%"
  for token in common.tokens(arg):
    if token.startswith("labels="):
      labels = token[len("labels="):]
    elif token in MODELS or resnet.is_resnet(token):
      model = token
    elif token in DATA:
      data = token
    else:
      raise common.unknown_arg(
          "finetune.py", token, f"models: {', '.join(MODELS)}, "
          f"resnet{{18,34,50,101,152}}[x{{width}}][_sk], resnet_mu; data: {', '.join(DATA)}; "
          f"or labels=10%")
  return model, data, labels


def batch_size(model: str, data: str, labels: str) -> int:
  """The fine-tuning batch of a model arg on a data set (a DATA key) at a label fraction."""
  if is_cnn(model):
    return 128  # the reference CNN's recipe (below)
  if data == "imagenet2012":
    return 1024
  if labels == "1%" and data == "animal_mnist":
    return 64  # 1% is 80 images (70 with a validation holdout): under one batch of 128
  return 128  # the batch the recipe probes validated


def is_cnn(model: str) -> bool:
  """Whether a model arg names the convolutional family (plain CNNs and ResNets)."""
  return model.startswith("cnn_") or resnet.is_resnet(model)


def model_config(model: str, data: str) -> dict:
  """`config.model` of a model arg: the ViT's (patch 2 on 8x8 digits) or the CNN's.

  `projection_layers` (0 here) is how many layers of a SimCLR run's projection head the
  classifier keeps in front of its head, `proj_hidden` wide as pre-trained: SimCLRv2 fine-tunes
  from the first (`--config.model.projection_layers=1` with `--config.init_from` a SimCLR run;
  the study's `simclr_proj_finetune`)."""
  from_projection = dict(projection_layers=0, proj_hidden=512)
  if resnet.is_resnet(model):
    # The small-image stem (3x3/1 conv, no max pooling) keeps 28x28-64x64 inputs from being
    # pooled to a few pixels by the ImageNet stem.
    stem = "small" if DATA[data][1] <= 64 else "imagenet"
    return dict(family="cnn", variant=model, head_init_std=0.01, stem=stem, dtype="auto",
                **from_projection)
  variant, patch = MODELS[model]
  if is_cnn(model):
    return dict(family="cnn", variant=variant, head_init_std=0.01, dtype="auto",
                **from_projection)
  # fc_norm=True would put the LayerNorm after pooling as MAE's fine-tuning does (a fresh
  # norm); False keeps the pre-trained encoder's final norm, so an MAE checkpoint loads whole.
  return dict(family="vit", variant=variant,
              patch_size=2 if data == "digits" and patch == 4 else patch, pool="gap",
              drop_path=0.1, head_init_std=2e-5, fc_norm=False, qkv_bias=True,
              **from_projection, **layer_plan.EXECUTION_DEFAULTS)


def get_config(arg=None):
  """Fine-tuning config; see the module docstring for args."""
  model, data, labels = parse_arg(arg)
  big = data == "imagenet2012"

  c = ml_collections.ConfigDict()
  c.task = "supervised"
  c.seed = 0
  c.model = model_config(model, data)
  c.data = common.data_config(data, augment_for(data, labels), crop_scale=(0.35, 1.0))
  c.data.labels = labels
  c.label_smoothing = 0.1
  c.mixup = 0.0  # MAE's recipe uses 0.8 with cutmix on ImageNet; off for small data

  c.batch_size = batch_size(model, data, labels)
  c.total_steps = 0
  c.num_epochs = 100.0 if big else budget_epochs(data, labels, pretrained=False)
  # The labels the budget above was sized for: a later `data.labels` override that leaves
  # num_epochs alone is refused at training start (train.resolve_duration), since it would
  # silently keep this budget (the 10% one, by default) for another fraction.
  c.budget_sized_for = dict(labels=labels, num_epochs=c.num_epochs)
  c.warmup_steps = 0
  c.warmup_epochs = 5.0 if big else warmup_epochs(data, labels)
  # MAE fine-tuning: AdamW(0.9, 0.999), base lr 5e-4 (ViT-B), layer-wise decay 0.65, wd 0.05.
  c.optim = dict(name="adamw", base_lr=5e-4 if big else 2e-3, base_batch_size=256, b1=0.9,
                 b2=0.999, weight_decay=0.05, grad_clip_norm=0.0, min_lr_ratio=0.0,
                 # From scratch, layer-wise decay only slows the early blocks (0.896 with 0.75,
                 # 0.916 without, on validation): it is for fine-tuning (pretrained_overrides).
                 layer_decay=0.65 if big else 1.0, freeze=())

  common.distribute(c, big)
  c.log_steps = 50
  c.init_from = ""
  c.init_fresh = ("^head/",)

  if is_cnn(model):
    # The reference CNN's recipe (shared/design/references.md): AdamW lr 2e-3 at batch 128
    # (base lr 4e-3 per 256), wd 0.05, random shifts, no flips, no label smoothing, no
    # layer-wise decay. The baselines were measured with it; on few labels a CNN gains from
    # flips too (`--config.data.augment=shift+flip`, recipe_probe_few_labels.md).
    c.data.augment = "shift"
    c.label_smoothing = 0.0
    c.warmup_epochs = 1.0
    c.optim.update(base_lr=4e-3, layer_decay=1.0)

  eval_every = 5000 if big else 200
  # log_points > 0 evaluates that many times, evenly over the run, instead of every log_steps
  # (a learning curve of as many points whatever the budget).
  c.evals = dict(
      classification=dict(log_steps=eval_every, log_points=0,
                          split="validation" if big else "test", num_examples=0,
                          batch_size=256),
  )
  return ml_collections.ConfigDict(c)
