"""mll_jax: self-supervised pre-training, label-efficient learning and a model hub, in JAX."""

from mll_jax import libtpu_lock as _libtpu_lock

__version__ = "0.1.0"

# Before any JAX backend starts: on a host without TPU chips, libtpu's lockfile would otherwise
# let only one mll_jax process at a time load libtpu (see mll_jax/libtpu_lock.py).
_libtpu_lock.allow_libtpu_without_chips()
