"""The MAE train step and encoder inference with the ViT's exact GELU in PyTorch's erf form
(`mll_jax.models.gelu`, the model's) against JAX's erfc form (`jax.nn.gelu(approximate=False)`,
the model's GELU before 2026-12-07): what the change buys, in each CPU dtype policy.

    python -m benchmarks.diagnostics.gelu_step [--config=configs/mae.py] [--repeats=5] [--steps=10]
                                   [--dtypes=float32,bfloat16_matmul]

Both GELUs are built into the same step in this one process (the ViT block looks its GELU up
when it is traced, so each step is traced with the one in place then), on the same random
batches. After a warm-up of each, the timed windows alternate, one window of every variant
per round, and each figure is the median over rounds, as in `benchmarks/mae_step.py`.
"""


import jax
from absl import app, flags


if __name__ == "__main__":  # the process the trainer runs in (mll_jax/command.py)
  from mll_jax import command
  command.start()

from benchmarks import mae_step  # noqa: E402  (mae_step's --config, --repeats, --steps)
from mll_jax import allocator  # noqa: E402
from mll_jax.models import gelu  # noqa: E402

_DTYPES = flags.DEFINE_list("dtypes", ["float32", "bfloat16_matmul"],
                            "config.model.dtype policies to time both GELUs in.")

ERFC_FORM = lambda x: jax.nn.gelu(x, approximate=False)  # noqa: E731
GELUS = {"erf form": gelu.gelu, "erfc form": ERFC_FORM}


def main(argv):
  del argv
  config = mae_step._CONFIG.value
  shape, batches = mae_step.random_batches(config)
  variants = mae_step.variants_with_each(config, batches, _DTYPES.value, gelu, "gelu", GELUS)
  mae_step.alternate(variants, batches, mae_step._REPEATS.value, mae_step._STEPS.value)
  names = {f"{what} {dtype}": f"{what} {dtype}, erf form / erfc form"
           for dtype in _DTYPES.value for what in ("train", "infer")}
  mae_step.report_comparison(
      f"The ViT's GELU in erf vs erfc form, {allocator.loaded_allocator()} allocator", config,
      shape, variants, names, "erf form", "erfc form")


if __name__ == "__main__":
  app.run(main)
