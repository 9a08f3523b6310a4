"""MAE pre-training.

Default: the `tiny` ViT on animal_mnist (offline, a few minutes on a 2-core CPU).
Args select variants, comma-separated, e.g.
  --config=configs/mae.py:vit_b16,imagenet2012   the paper's ViT-B/16 recipe on ImageNet-1k
  --config=configs/mae.py:mu                     the test-sized model
Model args: mu, mini, tiny, vit_s16, vit_b16, vit_l16, vit_h14.
Data args: animal_mnist, digits, mnist (IDX files: set data.manual_dir), cifar10, cifar100,
imagenet2012 (TFDS sets must be prepared by the user).
"""

import ml_collections

from configs import common
from mll_jax.models import layer_plan

MODELS = {  # arg -> (variant, patch size, decoder)
    "mu": ("mu", 4, "mu"),
    "mini": ("mini", 4, "tiny"),  # a small student / the label-efficiency study's model
    "tiny": ("tiny", 4, "tiny"),
    "vit_s16": ("S/16", 16, "standard"),
    "vit_b16": ("B/16", 16, "standard"),
    "vit_l16": ("L/16", 16, "standard"),
    "vit_h14": ("H/14", 14, "standard"),
}
DATA = common.DATA


# Augmentation by data set (config.data.augment): MAE's crop + flip, without the flip for
# digits (a mirrored 2 is not a 2).
AUGMENT = {"digits": "crop", "mnist": "crop"}


def _parse(arg):
  model, data = "tiny", "animal_mnist"
  for token in common.tokens(arg):
    if token in MODELS:
      model = token
    elif token in DATA:
      data = token
    else:
      raise common.unknown_arg("mae.py", token, f"models: {', '.join(MODELS)}; "
                               f"data: {', '.join(DATA)}")
  return model, data


def get_config(arg=None):
  """The MAE config; see the module docstring for args."""
  model, data = _parse(arg)
  variant, patch, decoder = MODELS[model]
  big = data == "imagenet2012"

  c = ml_collections.ConfigDict()
  c.task = "mae"
  c.seed = 0
  c.model = dict(variant=variant, patch_size=patch, decoder=decoder, mask_ratio=0.75,
                 norm_pix_loss=True, **layer_plan.EXECUTION_DEFAULTS)
  if data == "digits" and model in ("mu", "tiny"):
    c.model.patch_size = 2
  c.data = common.data_config(data, AUGMENT.get(data, "crop+flip"), crop_scale=(0.2, 1.0))

  # Duration: steps, or epochs (used when total_steps is 0); warm-up likewise.
  c.batch_size = 4096 if big else 128
  c.total_steps = 0
  c.num_epochs = 800.0 if big else 15.0
  c.warmup_steps = 0
  c.warmup_epochs = 40.0 if big else 1.0
  # The paper's base lr is for 800 epochs; the short offline default trains well hotter.
  c.optim = dict(name="adamw", base_lr=1.5e-4 if big else 2e-3, base_batch_size=256, b1=0.9,
                 b2=0.95, weight_decay=0.05, grad_clip_norm=0.0, min_lr_ratio=0.0)

  common.distribute(c, big)
  c.log_steps = 50
  c.init_from = ""

  eval_every = 5000 if big else 250
  c.evals = dict(
      reconstruction=dict(log_steps=eval_every, split="test", num_examples=1024,
                          batch_size=256),
      fewshot=dict(log_steps=eval_every, train_split="train", test_split="test",
                   num_train_examples=5000 if big else 2000, num_test_examples=2000,
                   shots=(5, 10, 25), seeds=3, l2_reg=1.0, batch_size=256),
  )
  return ml_collections.ConfigDict(c)
