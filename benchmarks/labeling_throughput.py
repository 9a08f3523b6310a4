"""Labelling throughput (pool images/s through one expert): the hub's jitted, batched,
sharded `labeling.label_model` against plain per-batch Python loops, in the same run.

    python -m benchmarks.labeling_throughput [--variant=mini] [--images=4096] [--repeats=5]

Baselines, on the same images and variables:
  eager_loop   a Python loop over batches of `--loop_batch` calling the model without jit
               (op-by-op dispatch), fetching each batch's responses to the host
  jit_loop     the same loop with the model jitted once (compiled per batch shape), fetching
               each batch's responses before the next is sent
Each figure is the median over `repeats` timed passes after a warm-up pass (compilation
excluded); the ratios are label_model / baseline.
"""

import statistics
import time

import jax
import numpy as np
from absl import app, flags


if __name__ == "__main__":  # the process the trainer runs in (mll_jax/command.py)
  from mll_jax import command
  command.start()

from benchmarks import report  # noqa: E402
from mll_jax.hub import functional, labeling  # noqa: E402

_VARIANT = flags.DEFINE_string("variant", "mini", "ViT variant of the expert.")
_IMAGES = flags.DEFINE_integer("images", 4096, "Pool images labelled per pass.")
_BATCH = flags.DEFINE_integer("batch", None, "label_model's batch size (default: its own).")
_LOOP_BATCH = flags.DEFINE_integer("loop_batch", 64, "The baselines' batch size.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed passes per method.")
_EAGER_IMAGES = flags.DEFINE_integer("eager_images", 512,
                                     "Images per eager pass (it is slow; the rate is per image).")


def _median_rate(run, images: int, repeats: int) -> float:
  run()  # warm-up (and compilation)
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    run()
    times.append(time.perf_counter() - start)
  return images / statistics.median(times)


def main(argv):
  del argv
  architecture = {"task": "expert", "model": {"variant": _VARIANT.value, "patch_size": 4,
                                              "pool": "gap"},
                  "image_size": 28, "channels": 1, "num_classes": 3}
  variables = functional.init_variables(architecture, seed=0)
  apply = functional.apply_fn(architecture)
  images = np.random.default_rng(0).integers(0, 256, (_IMAGES.value, 28, 28, 1), np.uint8)
  pools = labeling.Pools(images, np.zeros(len(images), np.int32), ("all",),
                         (np.arange(len(images)),))
  responses = lambda v, x: jax.nn.log_softmax(apply(v, x), axis=-1)
  jitted = jax.jit(responses)

  def loop(fn, data):
    return [np.asarray(fn(variables, data[s:s + _LOOP_BATCH.value]))
            for s in range(0, len(data), _LOOP_BATCH.value)]

  eager_images = images[:_EAGER_IMAGES.value]
  rates = {
      "label_model": _median_rate(
          lambda: labeling.label_model(apply, variables, pools, _BATCH.value), len(images),
          _REPEATS.value),
      "jit_loop": _median_rate(lambda: loop(jitted, images), len(images), _REPEATS.value),
      "eager_loop": _median_rate(lambda: loop(responses, eager_images), len(eager_images),
                                 max(1, _REPEATS.value // 2)),
  }
  check = labeling.label_model(apply, variables, pools, _BATCH.value)["responses"]
  np.testing.assert_allclose(check[:64], np.concatenate(loop(jitted, images[:64])), atol=1e-4)
  print(f"Labelling throughput, {_VARIANT.value} ViT expert, 28x28x1, {jax.device_count()} "
        f"{jax.default_backend()} device(s); median of {_REPEATS.value} passes:")
  for name, rate in rates.items():
    print(f"  {name:<12} {rate:10.0f} images/s")
  for baseline in ("jit_loop", "eager_loop"):
    print(f"  ratio label_model / {baseline}: {rates['label_model'] / rates[baseline]:.2f}x")
  report.emit(
      "Labelling", f"{_VARIANT.value} ViT expert, {_IMAGES.value} images 28x28x1, "
      f"{jax.device_count()} {jax.default_backend()} device(s), median of {_REPEATS.value}",
      {name: (rate, "images/s") for name, rate in rates.items()},
      {f"label_model / {b}": rates["label_model"] / rates[b] for b in ("jit_loop", "eager_loop")})


if __name__ == "__main__":
  app.run(main)
