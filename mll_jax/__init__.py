"""mll_jax: self-supervised pre-training, label-efficient learning and a model hub, in JAX.

Importing it changes nothing in the process (no environment variable, no allocator): the
command-line entry points set up their own process (`mll_jax/command.py`).
"""

__version__ = "0.1.0"
