"""mll_jax: self-supervised pre-training, label-efficient learning and a model hub, in JAX."""

__version__ = "0.1.0"
