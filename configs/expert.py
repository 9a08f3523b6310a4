"""A hub expert: a classifier (ViT or convolutional) on a named subset of a data set's classes.

    python -m mll_jax.train --config=configs/expert.py --config.classes=cat,dog,horse \
        [--config.init_from=runs/mae-XXXXXXXX]

Args as configs/finetune.py (model, data set, labels=...); default the `mini` ViT on all of
animal_mnist's training images of the named classes, with the fine-tuning recipe's budget from
scratch (configs/finetune.py `EPOCHS`); from an MAE encoder (`init_from`), add
`finetune.pretrained_overrides` as experiments/hub_experts.py does. Register the run with
`python -m mll_jax.hub register`.
"""

import ml_collections

from configs import common, finetune
from mll_jax.models import resnet

MODELS, DATA = finetune.MODELS, finetune.DATA


def get_config(arg=None):
  """The fine-tuning config on a class subset; `classes` must be set."""
  tokens = common.tokens(arg)
  if not any(t in MODELS or resnet.is_resnet(t) for t in tokens):
    tokens.append("mini")
  if not any(t.startswith("labels=") for t in tokens):
    tokens.append("labels=100%")
  c = finetune.get_config(",".join(tokens))
  c.task = "expert"
  c.classes = ""  # required: comma-separated class names of the data set
  c.warmup_epochs = 1.0
  c.checkpoint.every_steps = 200
  # A floor under the budget in passes (0: none). experiments/hub_experts.py sets it: a 3-class
  # expert's 20 passes are 338 steps, short of flat (experiments/results/recipe_probe_experts.md).
  c.min_steps = 0
  return ml_collections.ConfigDict(c)
