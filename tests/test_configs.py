"""Every config file builds, with each of its args.

Command-line overrides (valid ones, and an unknown key that must fail) are exercised through
the real CLI in test_train.py.
"""

import pytest

from mll_jax import config_files
from conftest import REPO_ROOT

CONFIG_FILES = sorted((REPO_ROOT / "configs").glob("*.py"))


def _load(path):
  return config_files.load(path)


def _args_of(module):
  models = getattr(module, "MODELS", {None: None})
  data = getattr(module, "DATA", {None: None})
  return [None] + [m for m in models if m] + [",".join(filter(None, (m, d)))
                                               for m in list(models)[:1] for d in data if d]


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.name)
def test_every_config_and_arg_builds(path):
  module = _load(path)
  for arg in _args_of(module):
    config = module.get_config(arg)
    assert config.task and config.batch_size > 0
    assert config.evals, f"{path.name}:{arg} has no evaluators"


def test_mae_big_variant_has_the_paper_recipe():
  config = _load(REPO_ROOT / "configs" / "mae.py").get_config("vit_b16,imagenet2012")
  assert (config.model.variant, config.data.image_size, config.batch_size) == ("B/16", 224, 4096)
  assert config.optim.base_lr == 1.5e-4 and (config.optim.b1, config.optim.b2) == (0.9, 0.95)
  assert config.warmup_epochs == 40 and config.model.mask_ratio == 0.75


def test_unknown_arg_is_named():
  with pytest.raises(ValueError, match="unknown arg 'vit_zz'"):
    _load(REPO_ROOT / "configs" / "mae.py").get_config("vit_zz")


@pytest.mark.parametrize("file", ["mae.py", "finetune.py", "linear_probe.py", "expert.py",
                                  "distill.py", "simclr.py"])
def test_digits_are_never_flipped(file):
  module = _load(REPO_ROOT / "configs" / file)
  for data in ("mnist", "digits"):
    config = module.get_config(data)
    assert "flip" not in config.data.augment.split("+"), (file, data)
  animals = module.get_config("animal_mnist")
  assert animals.data.augment  # every config names its augmentation
