"""The MAE train step and encoder inference with the ViT's LayerNorm (`mll_jax.models.layernorm`:
statistics as matrix products, closed-form backward) against `nnx.LayerNorm` (the model's
LayerNorm before 2026-12-07): what the change buys, in each CPU dtype policy.

    python -m benchmarks.diagnostics.layernorm_step [--config=configs/mae.py] [--repeats=5] [--steps=10]
                                        [--dtypes=float32,bfloat16_matmul]

Both LayerNorms are built into the same step in this one process (the ViT looks its LayerNorm
class up when it is built, so each step is built and traced with the one in place then), on
the same random batches. After a warm-up of each, the timed windows alternate, one window of
every variant per round, and each figure is the median over rounds, as in
`benchmarks/mae_step.py`.
"""


from absl import app, flags
from flax import nnx


if __name__ == "__main__":  # the process the trainer runs in (mll_jax/command.py)
  from mll_jax import command
  command.start()

from benchmarks import mae_step  # noqa: E402  (mae_step's --config, --repeats, --steps)
from mll_jax import allocator  # noqa: E402
from mll_jax.models import layernorm  # noqa: E402

_DTYPES = flags.DEFINE_list("dtypes", ["float32", "bfloat16_matmul"],
                            "config.model.dtype policies to time both LayerNorms in.")

FORMS = {"matmul form": layernorm.LayerNorm, "flax": nnx.LayerNorm}  # the model's, the baseline


def main(argv):
  del argv
  config = mae_step._CONFIG.value
  shape, batches = mae_step.random_batches(config)
  variants = mae_step.variants_with_each(config, batches, _DTYPES.value, layernorm, "LayerNorm",
                                         FORMS)
  mae_step.alternate(variants, batches, mae_step._REPEATS.value, mae_step._STEPS.value)
  names = {f"{what} {dtype}": f"{what} {dtype}, matmul form / flax"
           for dtype in _DTYPES.value for what in ("train", "infer")}
  mae_step.report_comparison(
      f"The ViT's LayerNorm, matmul form vs nnx.LayerNorm, {allocator.loaded_allocator()} "
      "allocator", config, shape, variants, names, "matmul form", "flax")


if __name__ == "__main__":
  app.run(main)
