"""The MAE train step and encoder inference with the ViT's LayerNorm (`mll_jax.models.layernorm`:
statistics as matrix products, closed-form backward) against `nnx.LayerNorm` (the model's
LayerNorm before 2026-12-07): what the change buys, in each CPU dtype policy.

    python benchmarks/layernorm_step.py [--config=configs/mae.py] [--repeats=5] [--steps=10]
                                        [--dtypes=float32,bfloat16_matmul]

Both LayerNorms are built into the same step in this one process (the ViT looks its LayerNorm
class up when it is built, so each step is built and traced with the one in place then), on
the same random batches. After a warm-up of each, the timed windows alternate, one window of
every variant per round, and each figure is the median over rounds, as in
`benchmarks/mae_step.py`.
"""

import os
import sys

from absl import app, flags
from flax import nnx

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

if __name__ == "__main__":  # the allocator the trainer runs on (mll_jax/allocator.py)
  from mll_jax.allocator import use_tcmalloc
  use_tcmalloc()

from benchmarks import mae_step, report  # noqa: E402  (mae_step's --config, --repeats, --steps)
from mll_jax import allocator  # noqa: E402
from mll_jax.models import layernorm  # noqa: E402

_DTYPES = flags.DEFINE_list("dtypes", ["float32", "bfloat16_matmul"],
                            "config.model.dtype policies to time both LayerNorms in.")

FORMS = {"matmul form": layernorm.LayerNorm, "flax": nnx.LayerNorm}  # the model's, the baseline


def main(argv):
  del argv
  config = mae_step._CONFIG.value
  shape, batches = mae_step.random_batches(config)
  variants = {}
  model_class = layernorm.LayerNorm
  try:
    for dtype in _DTYPES.value:
      for form, layer_class in FORMS.items():
        layernorm.LayerNorm = layer_class
        train, infer, _ = mae_step.jax_variants(config, batches, dtype)
        train.warm_up(batches)  # traces (and compiles) with this LayerNorm in place
        infer.warm_up(batches)
        variants[f"train {dtype} {form}"] = train
        variants[f"infer {dtype} {form}"] = infer
  finally:
    layernorm.LayerNorm = model_class
  mae_step.alternate(variants, batches, mae_step._REPEATS.value, mae_step._STEPS.value)

  figures, ratios = {}, {}
  for name, v in variants.items():
    print(f"{name:36s} {v.rate:8.1f} images/s (median of {mae_step._REPEATS.value})")
    figures[name] = (v.rate, "images/s")
  for dtype in _DTYPES.value:
    for what in ("train", "infer"):
      name = f"{what} {dtype}, matmul form / flax"
      ratios[name] = variants[f"{what} {dtype} matmul form"].rate / \
          variants[f"{what} {dtype} flax"].rate
      print(f"ratio {name}: {ratios[name]:.2f}x")
  report.emit(f"The ViT's LayerNorm, matmul form vs nnx.LayerNorm, "
              f"{allocator.loaded_allocator()} allocator",
              mae_step.comparison_setup(config, shape), figures, ratios)


if __name__ == "__main__":
  app.run(main)
