"""The MAE train step and encoder inference with each attention kernel of
`config.model.attention` (`mll_jax.models.attention`): the head-major form (`einsum`) against
`jax.nn.dot_product_attention`'s XLA path (`xla`, what `auto` runs on CPU), in each CPU dtype
policy; and a hub expert's logits (`--expert`, float32 as hub entries are) with each, the
forward the hub's labelling and reuse run.

    python -m benchmarks.diagnostics.attention_step [--config=configs/mae.py] [--repeats=5] [--steps=10]
                                        [--dtypes=float32,bfloat16_matmul] [--expert=mini]

Both kernels' steps are built in this one process from the same config but for
`config.model.attention`, on the same random batches (the expert reads them too); after a warm-up of each, the timed
windows alternate, one window of every variant per round, and each figure is the median over
rounds, as in `benchmarks/mae_step.py`.
"""


import jax
from absl import app, flags


if __name__ == "__main__":  # the process the trainer runs in (mll_jax/command.py)
  from mll_jax import command
  command.start()

from benchmarks import mae_step  # noqa: E402  (mae_step's --config, --repeats, --steps)
from mll_jax import allocator  # noqa: E402
from mll_jax.hub import functional  # noqa: E402

_DTYPES = flags.DEFINE_list("dtypes", ["float32", "bfloat16_matmul"],
                            "config.model.dtype policies to time both kernels in.")
_EXPERT = flags.DEFINE_string("expert", "mini", "ViT variant of the hub expert whose logits "
                              "(the hub's labelling and reuse forward) are timed too.")
KERNELS = ("einsum", "xla")  # the head-major form, then JAX's kernel (the baseline)


def expert_logits(kernel: str) -> mae_step.Variant:
  """A freshly initialised 3-class hub expert's jitted logits (`functional.apply_fn`) with
  `kernel`, on the benchmark's uint8 batches (28x28 grey, as the default config's)."""
  expert = {"task": "expert", "image_size": 28, "channels": 1, "num_classes": 3,
            "model": {"variant": _EXPERT.value, "patch_size": 4, "attention": kernel}}
  apply = jax.jit(functional.apply_fn(expert))
  variables = functional.init_variables(expert)
  return mae_step.Variant(lambda images: apply(variables, images), jax.block_until_ready)


def main(argv):
  del argv
  config = mae_step._CONFIG.value
  shape, batches = mae_step.random_batches(config)
  variants = {}
  for dtype in _DTYPES.value:
    for kernel in KERNELS:
      kernel_config = config.copy_and_resolve_references()
      kernel_config.model.attention = kernel
      train, infer, _ = mae_step.jax_variants(kernel_config, batches, dtype)
      variants[f"train {dtype} {kernel}"] = train
      variants[f"infer {dtype} {kernel}"] = infer
  for kernel in KERNELS:
    variants[f"expert {kernel}"] = expert_logits(kernel)
  mae_step.alternate(variants, batches, mae_step._REPEATS.value, mae_step._STEPS.value)

  names = {f"{what} {dtype}": f"{what} {dtype}, einsum / xla"
           for dtype in _DTYPES.value for what in ("train", "infer")}
  names["expert"] = f"{_EXPERT.value} expert logits, einsum / xla"
  mae_step.report_comparison(
      "The ViT's attention, head-major einsum vs jax.nn.dot_product_attention, "
      f"{allocator.loaded_allocator()} allocator", config, shape, variants, names, "einsum", "xla")


if __name__ == "__main__":
  app.run(main)
