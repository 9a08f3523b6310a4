"""Where the CPU time of one MAE train step goes: XLA's own profiler, summed by HLO op.

    python -m benchmarks.diagnostics.step_profile [--config=configs/mae.py] [--profile_steps=20] [--top=25]
                                      [--dtype=bfloat16]

Traces `--profile_steps` train steps (float32, or `--dtype=bfloat16`) of the config (after a warm-up; the step is the one
`benchmarks/mae_step.py` times) with `jax.profiler`, reads the trace back with
`jax.profiler.ProfileData`, and sums the time of every executed HLO instruction (XLA CPU
records one event per thunk, named by the instruction). Each instruction is classed from the
optimised HLO text (matmul, convolution, elementwise fusion, reduction, copy or transpose,
...), and the report gives the time per class and the `--top` instructions, as milliseconds
per step and as a share of the traced step time. Profile before optimising (issue 13): this is
the measurement that says whether the forward's matmuls, the backward's layout work or the
optimizer's elementwise updates hold the step back.
"""

import collections

from absl import app, flags


if __name__ == "__main__":  # the process the trainer runs in (mll_jax/command.py)
  from mll_jax import command
  command.start()

from benchmarks.diagnostics import hlo_profile  # noqa: E402
from benchmarks import mae_step  # noqa: E402  (its --config flag is this script's too)

_PROFILE_STEPS = flags.DEFINE_integer("profile_steps", 20, "Train steps traced.")
_TOP = flags.DEFINE_integer("top", 25, "Instructions listed.")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16", "bfloat16_matmul"],
                           "Compute dtype of the traced step (config.model.dtype).")

def main(argv):
  del argv
  config = mae_step._CONFIG.value
  shape, batches = mae_step.random_batches(config)
  train, _, _, compiled_text = mae_step.jax_variants(config, batches, _DTYPE.value,
                                                     with_hlo=True)
  train.warm_up(batches)
  steps = _PROFILE_STEPS.value
  times, wall = hlo_profile.traced_op_times(train.run, batches, steps)
  classes = hlo_profile.instruction_classes(compiled_text)
  total = sum(times.values())
  by_class = collections.defaultdict(float)
  for op, ns in times.items():
    by_class[classes.get(op, "unclassified")] += ns
  print(f"MAE {config.model.variant} patch {config.model.patch_size}, decoder "
        f"{config.model.decoder}, batch {shape}, {_DTYPE.value}; {steps} traced steps, "
        f"{wall / steps * 1e3:.1f} ms per step wall clock, {total / steps / 1e6:.1f} ms per "
        "step of instruction time (summed over threads)")
  print(f"\n{'class':28s} {'ms/step':>9s} {'share':>7s}")
  for name, ns in sorted(by_class.items(), key=lambda kv: -kv[1]):
    print(f"{name:28s} {ns / steps / 1e6:9.2f} {ns / total:7.1%}")
  print(f"\n{'instruction':40s} {'class':24s} {'ms/step':>9s} {'share':>7s}")
  for op, ns in sorted(times.items(), key=lambda kv: -kv[1])[:_TOP.value]:
    print(f"{op[:40]:40s} {classes.get(op, 'unclassified')[:24]:24s} "
          f"{ns / steps / 1e6:9.2f} {ns / total:7.1%}")


if __name__ == "__main__":
  app.run(main)
