"""Loading config files by path (they are files passed to --config, not a package)."""

import importlib.util
import pathlib
import types


def load(path: str | pathlib.Path) -> types.ModuleType:
  """The config file at `path` as a module (its `get_config`, `MODELS`, ...)."""
  path = pathlib.Path(path)
  spec = importlib.util.spec_from_file_location(f"config_{path.stem}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def sibling(config_file: str, name: str) -> types.ModuleType:
  """Another config file in the same folder as `config_file` (pass `__file__`)."""
  return load(pathlib.Path(config_file).with_name(name))
