"""Where the MAE train step's time goes beside PyTorch's, by taking it apart (issue 13's
float32 gap). A diagnosis, not in run.py's report.

    python -m benchmarks.diagnostics.step_parts [--config=configs/mae.py] [--repeats=8] [--steps=8]

1. **The step's matmuls alone.** Every linear layer of the config's MAE (patch embedding, each
   block's qkv, projection and MLP, decoder embedding and blocks, prediction) has three
   products per train step: the forward, the input gradient and the kernel gradient. All of
   them, with the step's shapes in float32, run once as one jitted program (none waits for
   another, where in the step many do) and once as one jitted product per call (each call's
   start-up added), against the same products in PyTorch (one by one, as eager autograd runs
   them): what the step's matmuls cost on either side.
2. **The step without parts of the model.** The float32 train step is built again with one
   part replaced by a cheaper stand-in: attention's own products (the values stand in for
   softmax(q k) v), the LayerNorms (scale and shift only), GELU (the identity), the linear
   layers' bias adds; then all four at once. PyTorch's step runs whole and without its
   attention products (`F.scaled_dot_product_attention` returning the values). What a part
   costs in a step is the whole step's time less the step's without it.

Every variant of a part runs in alternating rounds (mae_step.alternate), medians over rounds.
The stand-ins change what is computed: their losses are not the model's, only their times
are read.
"""

import contextlib
import time

import numpy as np
from absl import app


if __name__ == "__main__":  # the process the trainer runs in (mll_jax/command.py)
  from mll_jax import command
  command.start()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from benchmarks import mae_step  # noqa: E402  (its --config, --repeats, --steps)
from mll_jax.models import attention, gelu, layernorm, precision, vit  # noqa: E402
from mll_jax.models import mae as mae_model  # noqa: E402


def linear_shapes(config) -> list[tuple[int, int, int]]:
  """`(rows, fan_in, fan_out)` of every linear layer of the config's MAE in one train step:
  rows are the batch's tokens that layer sees (the encoder sees the visible patches and its
  cls token, the decoder every patch and the cls token)."""
  m = config.model
  enc, dec = vit.encoder_size(m.variant), mae_model.DECODER_SIZES[m.decoder]
  patch = m.patch_size or enc.patch_size
  patches = (config.data.image_size // patch) ** 2
  encoder_rows = config.batch_size * (int(patches * (1 - m.mask_ratio)) + 1)
  decoder_rows = config.batch_size * (patches + 1)
  pixels = patch * patch * config.data.channels

  def block(rows, size):
    w = size.width
    return [(rows, w, 3 * w), (rows, w, w), (rows, w, size.mlp_dim), (rows, size.mlp_dim, w)]

  return ([(config.batch_size * patches, pixels, enc.width)]
          + block(encoder_rows, enc) * enc.depth + [(encoder_rows, enc.width, dec.width)]
          + block(decoder_rows, dec) * dec.depth + [(decoder_rows, dec.width, pixels)])


def matmul_variants(shapes) -> dict[str, mae_step.Variant]:
  """The step's forward, input-gradient and kernel-gradient products: in one jitted program,
  one jitted product per call, and PyTorch's."""
  import torch
  rng = np.random.default_rng(0)
  arrays = [(rng.standard_normal((r, i), np.float32), rng.standard_normal((i, o), np.float32),
             rng.standard_normal((r, o), np.float32)) for r, i, o in shapes]
  on_device = [tuple(map(jnp.asarray, a)) for a in arrays]
  in_torch = [tuple(map(torch.from_numpy, a)) for a in arrays]
  products = (lambda x, w, g: x @ w, lambda x, w, g: g @ w.T, lambda x, w, g: x.T @ g)

  @jax.jit
  def program(layers):
    return [p(*layer) for layer in layers for p in products]

  one_by_one = [jax.jit(p) for p in products]

  def per_call(_):
    return [p(*layer) for layer in on_device for p in one_by_one]

  def torch_eager(_):
    return [p(*layer) for layer in in_torch for p in products]

  return {"matmuls jax, one program": mae_step.Variant(lambda _: program(on_device),
                                                        jax.block_until_ready),
          "matmuls jax, one call each": mae_step.Variant(per_call, jax.block_until_ready),
          "matmuls PyTorch": mae_step.Variant(torch_eager, lambda out: out)}


def _values_for_attention(qkv, heads, implementation):
  del heads, implementation
  return jnp.split(qkv, 3, axis=-1)[2] * 1.0  # a product, so the values' gradient flows


def _scale_and_shift(norm, x):
  return x * norm.scale[...] + norm.bias[...]


def _without_bias(layer, inputs, out_sharding=None):
  del out_sharding
  return precision.linear_matmul(inputs, layer.kernel[...], layer.matmul_dtype)


# Part name -> (object, attribute, stand-in) swapped while the step is traced.
STAND_INS = {
    "attention products": [(attention, "multi_head_attention", _values_for_attention)],
    "LayerNorm": [(layernorm.LayerNorm, "__call__", _scale_and_shift)],
    "GELU": [(gelu, "gelu", lambda x: x * 1.0)],
    "bias adds": [(precision.Linear, "__call__", _without_bias)],
}


@contextlib.contextmanager
def swapped(swaps):
  """Sets each `(owner, attribute, value)` of `swaps` and puts the originals back."""
  originals = [getattr(owner, name) for owner, name, _ in swaps]
  try:
    for owner, name, value in swaps:
      setattr(owner, name, value)
    yield
  finally:
    for (owner, name, _), original in zip(swaps, originals):
      setattr(owner, name, original)


def stand_ins(parts):
  """Swaps in the stand-ins of `parts` (names of STAND_INS) while the context lasts."""
  return swapped([swap for part in parts for swap in STAND_INS[part]])


def step_variants(config, batches) -> dict[str, mae_step.Variant]:
  """The float32 train step whole, without each part, without all; PyTorch's whole and
  without its attention products."""
  from benchmarks import torch_mae
  variants = {}
  for label, parts in [("whole", []), *[(f"no {p}", [p]) for p in STAND_INS],
                       ("none of the four", list(STAND_INS))]:
    with stand_ins(parts):  # the swap lasts while the step is traced and compiled
      variants[f"step jax, {label}"] = mae_step.jax_variants(config, batches, "float32")[0]
  variants["step PyTorch, whole"] = mae_step.torch_variants(config, False)[0]
  without = mae_step.torch_variants(config, False)[0]
  eager_step = without.run

  def without_attention(images):  # eager: the swap must last while the step runs
    with swapped([(torch_mae.F, "scaled_dot_product_attention", lambda q, k, v: v * 1.0)]):
      return eager_step(images)

  without.run = without_attention
  variants["step PyTorch, no attention products"] = without
  return variants


def main(argv):
  del argv
  config = mae_step._CONFIG.value
  shape, batches = mae_step.random_batches(config)
  shapes = linear_shapes(config)
  flops = sum(6 * r * i * o for r, i, o in shapes)
  print(f"MAE {config.model.variant}, decoder {config.model.decoder}, batch {shape}: "
        f"{len(shapes)} linear layers, {3 * len(shapes)} products, {flops / 1e9:.1f} GFLOP "
        f"per step; {mae_step._REPEATS.value} alternating rounds of "
        f"{mae_step._STEPS.value}-call windows")
  started = time.time()
  for title, variants in (("the step's matmuls", matmul_variants(shapes)),
                          ("the float32 train step, parts replaced", step_variants(config,
                                                                                   batches))):
    mae_step.alternate(variants, batches, mae_step._REPEATS.value, mae_step._STEPS.value)
    print(f"\n{title}\n| variant | ms per step |\n|---|---|")
    for name, v in variants.items():
      print(f"| {name} | {1000 * config.batch_size / v.rate:.1f} |")
  print(f"\n{time.time() - started:.0f} s")


if __name__ == "__main__":
  app.run(main)
