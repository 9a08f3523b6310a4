"""SimCLR contrastive pre-training of a ViT (two views, NT-Xent, 3-layer projection head).

Args as configs/mae.py: a model and a data set, e.g. `configs/simclr.py:tiny,animal_mnist`.
"""

import ml_collections

from mll_jax import config_files
from mll_jax.models import layer_plan

_mae = config_files.sibling(__file__, "mae.py")
MODELS, DATA = _mae.MODELS, _mae.DATA


def get_config(arg=None):
  """SimCLR config sharing the MAE config's model / data vocabulary and evaluators."""
  c = _mae.get_config(arg)
  big = c.data.name == "imagenet2012"
  c.task = "simclr"
  c.model = dict(variant=c.model.variant, patch_size=c.model.patch_size, proj_hidden=512,
                 proj_dim=128, proj_depth=3, **layer_plan.EXECUTION_DEFAULTS)
  c.data.views = 2
  c.data.crop_scale = (0.08, 1.0) if big else (0.2, 1.0)
  c.temperature = 0.2
  c.batch_size = 4096 if big else 256
  c.num_epochs = 300.0 if big else 15.0
  c.warmup_epochs = 10.0 if big else 1.0
  c.optim.update(base_lr=1.5e-4 if big else 1e-3, b2=0.999, weight_decay=0.1)
  del c.evals["reconstruction"]  # no decoder: the few-shot probe shows the representation
  return ml_collections.ConfigDict(c)
