"""The compute-dtype policy of mixed-precision training (`config.model.dtype`).

`float32` and `bfloat16`: parameters and optimizer state stay float32 (`param_dtype`);
matmuls, convolutions and the residual stream run in the compute dtype; LayerNorm and
BatchNorm statistics, the attention softmax (jax.nn.dot_product_attention upcasts it) and every
loss run in float32, because each model hands its outputs (logits, pooled features,
projections, predicted pixels) back as float32. This is the split of big_vision's and MaxText's
`dtype` settings and of PyTorch AMP's autocast lists.

`bfloat16_matmul`: everything float32 but the operands of the ViT's linear layers (qkv,
projections, MLPs, decoder), which are cast to bfloat16 in the forward and the backward pass,
products accumulated in float32 (`linear_matmul`). Convolutions and attention's own products
stay float32. Why a third policy: on a CPU with AVX-512 BF16, XLA runs such dots 1.5-2x faster
than float32 ones, but a bfloat16 residual stream costs more than it gains (converts, and
bfloat16 reductions lowered as rounding reduce-windows: benchmarks/results/step_profile.md).
"""

from functools import partial

import jax
import jax.numpy as jnp
from flax import nnx

# Each policy's dtype of activations and the residual stream (what modules get as `dtype`).
COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16,
                  "bfloat16_matmul": jnp.float32}
# Policies whose linear layers cast their operands narrower than the activations.
MATMUL_DTYPES = {"bfloat16_matmul": jnp.bfloat16}

# "auto" per backend. On TPU and GPU bfloat16 is what every reference recipe uses. On CPU it
# was measured (benchmarks/mae_step.py, alternating rounds, benchmarks/results/report.md): a
# bfloat16 residual stream runs the MAE `tiny` train step at 0.93-1.03x float32, while
# bfloat16_matmul runs it at 1.32-1.40x (glibc) to 1.50-1.56x (tcmalloc), inference 1.3-1.45x,
# and reaches float32's result within the seed spread (benchmarks/results/precision_cpu.md,
# experiments/results/precision_parity_bfloat16_matmul.md). So bfloat16_matmul is the CPU default.
# A run saves its resolved policy, not the word "auto" (`train.config_json`), so runs of the
# old float32 default are not taken for runs of this one.
AUTO_DTYPE = {"tpu": "bfloat16", "gpu": "bfloat16", "cuda": "bfloat16", "rocm": "bfloat16",
              "cpu": "bfloat16_matmul"}


def dtype_name(name: str = "auto", backend: str | None = None) -> str:
  """`name` ("float32", "bfloat16", "bfloat16_matmul" or "auto") resolved to a concrete policy
  name; "auto" picks per backend (`jax.default_backend()` unless given). Unknown names get one
  message listing the valid ones."""
  if name == "auto":
    return AUTO_DTYPE.get(backend or jax.default_backend(), "float32")
  if name not in COMPUTE_DTYPES:
    raise ValueError(f"config.model.dtype must be one of auto, {', '.join(COMPUTE_DTYPES)}; "
                     f"got {name!r}.")
  return name


def compute_dtype(name: str = "auto", backend: str | None = None):
  """The jnp dtype of activations under policy `name` (see `dtype_name`)."""
  return COMPUTE_DTYPES[dtype_name(name, backend)]


def with_matmul_policy(model: nnx.Module, name: str = "auto", backend: str | None = None):
  """`model` with its `Linear` layers set to the policy's operand dtype (`bfloat16_matmul`:
  bfloat16; other policies leave them as built). Returns `model`."""
  narrow = MATMUL_DTYPES.get(dtype_name(name, backend))
  if narrow is not None:
    model.set_attributes(Linear, matmul_dtype=narrow, raise_if_not_found=False)
  return model


@partial(jax.custom_vjp, nondiff_argnums=(2,))
def linear_matmul(x: jax.Array, kernel: jax.Array, operand_dtype) -> jax.Array:
  """`x @ kernel` over x's last axis, the product of a linear layer, with its own backward.

  `operand_dtype` (bfloat16 under `bfloat16_matmul`; None keeps the inputs' dtype) narrows
  both operands, the products summed in float32, and the backward's two matmuls likewise (the
  output gradient cast to it), as PyTorch's CPU autocast runs a linear layer: autodiff alone
  would run that backward in float32, since the transpose of a dot keeps its float32
  cotangent. Why a backward of our own in float32 too: autodiff's kernel gradient is one
  `dot_general` over the batch and token axes of the 3-D input and output gradient, which
  XLA's CPU backend ran by first copying a transposed output gradient (`[512, 6400]` from
  `[128, 50, 512]` for the decoder's MLP) for every layer. The same product of the 2-D row
  matrices, contracting their leading axes, runs without those copies; values are unchanged
  (equal to the last bit in an MLP's gradients), it took 35 against 60 ms for that MLP's
  forward and backward on the 2-core CPU, and the MAE `tiny` float32 train step ran 1.06-1.17x
  faster (`benchmarks/results/step_profile.md`)."""
  return _matmul_forward(x, kernel, operand_dtype)[0]


def _matmul_forward(x, kernel, operand_dtype):
  if operand_dtype is not None:
    x, kernel = x.astype(operand_dtype), kernel.astype(operand_dtype)
  summed = jnp.float32 if operand_dtype is not None else None
  y = jax.lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())),
                          preferred_element_type=summed)
  return y, (x, kernel)


def _matmul_backward(operand_dtype, residuals, grad):
  x, kernel = residuals  # narrowed already, under a narrowing policy
  if operand_dtype is not None:
    # Autodiff's forms, with the output gradient narrowed. The 2-D form below made the
    # bfloat16_matmul step slower (480 against 542 images/s), where it made float32's faster
    # (405 against 347; same run, alternating rounds): XLA CPU runs a bfloat16 dot contracting
    # leading axes more slowly than it copies a transposed bfloat16 operand.
    grad = grad.astype(operand_dtype)
    return (jnp.einsum("...o,io->...i", grad, kernel, preferred_element_type=jnp.float32),
            jnp.einsum("...i,...o->io", x, grad, preferred_element_type=jnp.float32))
  dx = jax.lax.dot_general(grad, kernel, (((grad.ndim - 1,), (1,)), ((), ())))
  rows, grad_rows = x.reshape(-1, x.shape[-1]), grad.reshape(-1, grad.shape[-1])
  return dx, jax.lax.dot_general(rows, grad_rows, (((0,), (0,)), ((), ())))


linear_matmul.defvjp(_matmul_forward, _matmul_backward)


def to_float32(x: jax.Array) -> jax.Array:
  """A model output handed to a loss or a metric: float32 whatever the compute dtype."""
  return x.astype(jnp.float32)


@jax.custom_vjp
def add_bias(y: jax.Array, bias: jax.Array) -> jax.Array:
  """`y + bias` in `y`'s dtype, as flax's Linear adds it; the bias gradient (a sum of the
  output gradient over every example and token) is accumulated in float32.

  Why not let autodiff do it: for a bfloat16 `y`, JAX sums the bfloat16 output gradient in
  bfloat16, which XLA CPU lowers as a tree of `reduce-window`s rounding at every level (in the
  MAE `tiny` bfloat16 step the profile's reduce-windows, these sums among them, took 15% of the
  step: benchmarks/results/step_profile.md), losing precision over thousands of rows. Summed
  in float32 they are exact to float32 and ordinary reductions; a step-time gain from this is
  not yet measured (two short runs differed by more than their noise)."""
  return y + bias.astype(y.dtype)


def _add_bias_forward(y, bias):
  return add_bias(y, bias), jnp.zeros((), bias.dtype)  # residual: the bias's dtype only


def _add_bias_backward(bias_like, grad):
  batch_axes = tuple(range(grad.ndim - 1))
  return grad, jnp.sum(grad, batch_axes, dtype=jnp.float32).astype(bias_like.dtype)


add_bias.defvjp(_add_bias_forward, _add_bias_backward)


class Linear(nnx.Linear):
  """`nnx.Linear` (same parameters, same forward) whose matmul is `linear_matmul` (its
  kernel gradient without autodiff's transposed copies) in float32, and whose bias gradient is
  summed in float32 (`add_bias`) when it computes in a narrower dtype. `matmul_dtype` (set by
  `with_matmul_policy`) narrows only its matmul's operands. A float32 layer with options it
  does not use here (an explicit `precision` or output sharding) runs nnx.Linear's code."""

  # None: the matmul runs in `dtype`. A class attribute, so that `set_attributes` finds it on
  # every layer and a layer built without a policy reads None.
  matmul_dtype = None

  def __call__(self, inputs: jax.Array, out_sharding=None) -> jax.Array:
    plain_float32 = self.dtype in (None, jnp.float32) and inputs.dtype == jnp.float32 and \
        self.precision is None and out_sharding is None
    if self.matmul_dtype is not None or plain_float32:
      y = linear_matmul(inputs, self.kernel[...], self.matmul_dtype)
      return y if self.bias is None else y + self.bias[...]
    if self.bias is None or self.dtype in (None, jnp.float32):
      return super().__call__(inputs, out_sharding)
    inputs, kernel = self.promote_dtype((inputs, self.kernel[...]), dtype=self.dtype)
    y = self.dot_general(inputs, kernel, (((inputs.ndim - 1,), (0,)), ((), ())),
                         precision=self.precision, out_sharding=out_sharding)
    return add_bias(y, self.bias[...])
