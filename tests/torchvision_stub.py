"""Lets `import timm` work where no torchvision build matches the installed torch.

timm imports torchvision in its data and utility modules, never in the ViT model itself. On
machines with CPU-only torch and no matching torchvision wheel, this import hook answers every
`torchvision.*` import with an inert module whose attributes are distinct placeholder classes,
so the real timm ViT code can run for the parity tests. Tests only; never used by mll_jax.
"""

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types


class _AnyAttribute(type):
  def __getattr__(cls, name):
    if name.startswith("__"):
      raise AttributeError(name)
    made = _AnyAttribute(name, (_Placeholder,), {})
    setattr(cls, name, made)  # the same name gives the same placeholder (dict keys stay distinct)
    return made


class _Placeholder(metaclass=_AnyAttribute):
  def __init__(self, *args, **kwargs):
    pass


class _PlaceholderModule(types.ModuleType):
  def __getattr__(self, name):
    if name.startswith("__"):
      raise AttributeError(name)
    made = _AnyAttribute(name, (_Placeholder,), {})
    setattr(self, name, made)
    return made


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
  def find_spec(self, name, path, target=None):
    if name == "torchvision" or name.startswith("torchvision."):
      return importlib.machinery.ModuleSpec(name, self, is_package=True)
    return None

  def create_module(self, spec):
    module = _PlaceholderModule(spec.name)
    module.__path__ = []
    return module

  def exec_module(self, module):
    pass


def install_if_needed() -> None:
  """Installs the hook unless a working torchvision is importable."""
  try:
    import torchvision  # noqa: F401
    return
  except Exception:  # missing, or a CUDA build that fails to load against CPU torch
    for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
      del sys.modules[name]
  sys.meta_path.insert(0, _Finder())
