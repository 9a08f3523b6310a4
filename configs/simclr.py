"""SimCLR contrastive pre-training of a ViT or a ResNet (two views, NT-Xent, 3-layer
projection head).

Args as configs/mae.py: a model and a data set, e.g. `configs/simclr.py:tiny,animal_mnist`, or a
convolutional trunk: a ResNet, e.g. `configs/simclr.py:resnet18,cifar10` (SimCLRv2's backbone
family), or a plain CNN (`cnn_s`, the reference CNN of experiments/baselines.py).
"""

import ml_collections

from configs import common
from configs import mae as _mae
from mll_jax.models import cnn, layer_plan, resnet

MODELS, DATA = _mae.MODELS, _mae.DATA


def get_config(arg=None):
  """SimCLR config sharing the MAE config's model / data vocabulary and evaluators; a ResNet
  arg (`resnet18`, `resnet50x2_sk`, ...) or a plain CNN's (`cnn_s`) pre-trains that trunk
  instead of a ViT."""
  tokens = common.tokens(arg)
  is_trunk = lambda t: resnet.is_resnet(t) or t in cnn.CNN_SIZES
  trunk = next((t for t in tokens if is_trunk(t)), None)
  c = _mae.get_config(",".join(t for t in tokens if not is_trunk(t)))
  big = c.data.name == "imagenet2012"
  c.task = "simclr"
  projection = dict(proj_hidden=512, proj_dim=128, proj_depth=3)
  if trunk:  # SimCLRv2's backbone (the small stem on 28x28-64x64 images), or a plain CNN
    c.model = dict(family="cnn", variant=trunk, dtype="auto",
                   stem="small" if c.data.image_size <= 64 else "imagenet", **projection)
  else:
    c.model = dict(family="vit", variant=c.model.variant, patch_size=c.model.patch_size,
                   **projection, **layer_plan.EXECUTION_DEFAULTS)
  c.data.views = 2
  c.data.crop_scale = (0.08, 1.0) if big else (0.2, 1.0)
  c.temperature = 0.2
  c.batch_size = 4096 if big else 256
  c.num_epochs = 300.0 if big else 15.0
  c.warmup_epochs = 10.0 if big else 1.0
  c.optim.update(base_lr=1.5e-4 if big else 1e-3, b2=0.999, weight_decay=0.1)
  del c.evals["reconstruction"]  # no decoder: the few-shot probe shows the representation
  return ml_collections.ConfigDict(c)
