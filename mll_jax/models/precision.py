"""The compute-dtype policy of mixed-precision training (`config.model.dtype`).

Parameters and optimizer state stay float32 (`param_dtype`); matmuls, convolutions and the
residual stream run in the compute dtype; LayerNorm and BatchNorm statistics, the attention
softmax (jax.nn.dot_product_attention upcasts it) and every loss run in float32, because each
model hands its outputs (logits, pooled features, projections, predicted pixels) back as
float32. This is the split of big_vision's and MaxText's `dtype` settings and of PyTorch AMP's
autocast lists.
"""

import jax
import jax.numpy as jnp

COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}

# "auto" per backend. On TPU and GPU bfloat16 is what every reference recipe uses. On CPU it
# was measured (benchmarks/mae_step.py, alternating rounds, benchmarks/results/report.md): the
# bfloat16 MAE `tiny` train step ran at 0.95x the float32 one (222 vs 232 images/s) and
# inference at 1.01x on the 2-core AVX-512-BF16 CPU, so float32 stays the CPU default.
AUTO_DTYPE = {"tpu": "bfloat16", "gpu": "bfloat16", "cuda": "bfloat16", "rocm": "bfloat16",
              "cpu": "float32"}


def dtype_name(name: str = "auto", backend: str | None = None) -> str:
  """`name` ("float32", "bfloat16" or "auto") resolved to a concrete dtype name; "auto" picks
  per backend (`jax.default_backend()` unless given). Unknown names get one message listing
  the valid ones."""
  if name == "auto":
    return AUTO_DTYPE.get(backend or jax.default_backend(), "float32")
  if name not in COMPUTE_DTYPES:
    raise ValueError(f"config.model.dtype must be one of auto, {', '.join(COMPUTE_DTYPES)}; "
                     f"got {name!r}.")
  return name


def compute_dtype(name: str = "auto", backend: str | None = None):
  """The jnp dtype that `name` stands for (see `dtype_name`)."""
  return COMPUTE_DTYPES[dtype_name(name, backend)]


def to_float32(x: jax.Array) -> jax.Array:
  """A model output handed to a loss or a metric: float32 whatever the compute dtype."""
  return x.astype(jnp.float32)
