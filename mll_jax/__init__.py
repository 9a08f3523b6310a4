"""mll_jax: self-supervised pre-training, label-efficient learning and a model hub, in JAX."""

from mll_jax import libtpu_without_chips as _libtpu_without_chips

__version__ = "0.1.0"

# Before any JAX backend starts: on a host without TPU chips, libtpu would otherwise let only
# one mll_jax process at a time load it, and print five lines of warnings on every command
# (see mll_jax/libtpu_without_chips.py).
_libtpu_without_chips.configure()
