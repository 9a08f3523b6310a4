"""Loading a Python file given by path as a module: the sweep files passed to `--sweep` (config
files passed to `--config` are loaded by ml_collections' `config_flags`)."""

import importlib.util
import pathlib
import types


def load(path: str | pathlib.Path) -> types.ModuleType:
  """The Python file at `path` as a module (a sweep file's `get_sweep`, a config's `get_config`)."""
  path = pathlib.Path(path)
  spec = importlib.util.spec_from_file_location(f"config_{path.stem}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module
