"""mll_jax's config files, one per job, each with `get_config(arg)`.

Pass one to the trainer by path (`--config=configs/mae.py:ARGS`); import one as a package module
(`from configs import finetune`) to use its recipe helpers. What they share is `common.py`.
"""

import importlib


def get_config(name: str, arg=None):
  """The config of `configs/<name>.py` for `arg`, as `--config=configs/<name>.py:<arg>` gives."""
  return importlib.import_module(f"configs.{name}").get_config(arg)
