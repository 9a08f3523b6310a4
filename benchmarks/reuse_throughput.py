"""Reuse throughput: the fused graph (`reuse.build`: every selected model, head gathering and
combination in one jitted function, same-architecture models stacked) against calling each
selected model's own jitted function in turn and combining on the host. The models of one
architecture run by `vmap` (one batched program), by `lax.map` (one after another in the graph)
and unrolled (each written out in the graph, no loop), all three timed.

    python -m benchmarks.reuse_throughput [--experts=mini,mini,mini,mini] [--batch=256]
    python -m benchmarks.reuse_throughput --experts=resnet18,resnet18,mini,mini,tiny,tiny

`--experts` names each expert's variant: a ViT size (mu, mini, tiny, ...) or a convolutional
one (resnet18, resnet_mu, cnn_mu, ...; ResNets get the small 28x28 stem), so a mixed selection
is as easy to time as a single-architecture one. The models are freshly initialised experts in
a temporary hub (speed does not depend on the weights); every head is selected with random
weights. Each figure is the
median images/s over `--repeats` rounds, each round one pass over `--images` images by every
contender in turn, after a warm-up pass each. Compile times are reported beside them (each
contender's graph for one batch, lowered and compiled ahead of time, once): the fused graph's
loop changes what XLA compiles, so a faster loop can cost more at start-up. Each architecture's
share of the models' own time (each model's jitted function timed alone, in the same
alternating way) says how much of the sequential pass fusing could touch.
"""

import statistics
import tempfile
import time

import jax
import numpy as np
from absl import app, flags


if __name__ == "__main__":  # the process the trainer runs in (mll_jax/command.py)
  from mll_jax import command
  command.start()

from benchmarks import report  # noqa: E402
from mll_jax.hub import functional, registry, reuse, selection  # noqa: E402
from mll_jax.models import vit  # noqa: E402

_EXPERTS = flags.DEFINE_list("experts", ["mini"] * 4,
                             "Variant of each selected expert (ViT or convolutional).")
_IMAGES = flags.DEFINE_integer("images", 2048, "Images per pass.")
_BATCH = flags.DEFINE_integer("batch", 256, "Images per call.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed rounds, one pass per contender each (median).")


def alternating_rates(contenders: dict, images, batch, repeats) -> dict[str, float]:
  """Median images/s of each contender over `repeats` rounds, one pass over `images` by each
  contender per round after one warm-up pass each, so load from outside the benchmark lands
  on every contender alike rather than on whichever was timed while it lasted."""
  def one_pass(fn):
    for start in range(0, len(images), batch):
      fn(images[start:start + batch])
  for fn in contenders.values():
    one_pass(fn)
  times = {name: [] for name in contenders}
  for _ in range(repeats):
    for name, fn in contenders.items():
      begin = time.perf_counter()
      one_pass(fn)
      times[name].append(time.perf_counter() - begin)
  return {name: len(images) / statistics.median(t) for name, t in times.items()}


def compile_seconds(jitted, *args) -> float:
  """Seconds to lower and compile `jitted` for `args` ahead of time (nothing is run)."""
  start = time.perf_counter()
  jitted.lower(*args).compile()
  return time.perf_counter() - start


def architecture(variant: str) -> dict:
  """A 3-class expert on 28x28 grey images: a ViT with 4x4 patches, or a convolutional
  trunk (ResNets with the small-image stem)."""
  if variant in vit.ENCODER_SIZES:
    model = {"variant": variant, "patch_size": 4, "pool": "gap"}
  else:
    model = {"family": "cnn", "variant": variant,
             **({"stem": "small"} if variant.startswith("resnet") else {})}
  return {"task": "expert", "model": model, "image_size": 28, "channels": 1, "num_classes": 3}


def describe(experts: list[str]) -> str:
  """`2 resnet18 + 2 mini` in the order first named."""
  counts = {v: experts.count(v) for v in dict.fromkeys(experts)}
  return " + ".join(f"{n} {v}" for v, n in counts.items()) + " experts"


def main(argv):
  del argv
  experts = _EXPERTS.value
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (_IMAGES.value, 28, 28, 1)).astype(np.uint8)
  with tempfile.TemporaryDirectory() as directory:
    hub = registry.Hub(directory)
    refs = [hub.register(f"m{i}", architecture(v),
                         functional.init_variables(architecture(v), seed=i),
                         ["a", "b", "c"]).ref for i, v in enumerate(experts)]
    heads = tuple((ref, c) for ref in refs for c in range(3))
    weights = rng.normal(size=(len(heads), 5)).astype(np.float32)
    chosen = selection.Selection(tuple("vwxyz"), (True,) * 5, heads, weights,
                                 np.zeros(5, np.float32), tuple(refs), 0.0, 0.0, ())
    fused = {loop: reuse.build(chosen, hub, stacked_loop=loop)
             for loop in reuse.STACKED_LOOPS}
    loaded = [hub.load(ref) for ref in refs]
    own = [jax.jit(apply) for apply, _ in loaded]

    def sequential(batch):
      scores = [np.asarray(jax.nn.log_softmax(fn(variables, batch)))
                for fn, (_, variables) in zip(own, loaded)]
      return np.concatenate(scores, axis=1) @ weights

    batch = images[:_BATCH.value]
    compile_times = {
        f"compile fused ({loop})": compile_seconds(graph.predict_fn, graph.variables,
                                                   graph.shard_batch(batch))
        for loop, graph in fused.items()}
    compile_times["compile sequential"] = sum(
        compile_seconds(fn, variables, batch) for fn, (_, variables) in zip(own, loaded))
    for graph in fused.values():
      np.testing.assert_allclose(graph.predict(images[:64]), sequential(images[:64]), atol=1e-3)
    rates = alternating_rates({**{f"fused ({loop})": graph.predict
                                  for loop, graph in fused.items()},
                               "sequential": sequential}, images, _BATCH.value, _REPEATS.value)
    # Where the sequential pass spends its time, by architecture: fusing saves dispatches,
    # host round trips and idle cores between models, not the models' own arithmetic, so
    # a selection whose time is mostly one compute-bound model leaves little to gain.
    own_rates = alternating_rates(
        {i: (lambda batch, fn=fn, variables=variables: np.asarray(fn(variables, batch)))
         for i, (fn, (_, variables)) in enumerate(zip(own, loaded))},
        images, _BATCH.value, _REPEATS.value)
  seconds_per_image = {v: sum(1 / own_rates[i] for i, e in enumerate(experts) if e == v)
                       for v in dict.fromkeys(experts)}
  shares = {f"{v} share of the models' own time": 100 * t / sum(seconds_per_image.values())
            for v, t in seconds_per_image.items()}
  families = len(set(experts))
  print(f"Reuse throughput, {describe(experts)} ({families} architecture(s)), "
        f"batch {_BATCH.value}, {jax.device_count()} {jax.default_backend()} device(s); "
        f"median of {_REPEATS.value} alternating rounds of one pass over {_IMAGES.value} "
        "images each:")
  for name, rate in rates.items():
    print(f"  {name:<22} {rate:7.0f} images/s")
  for name, seconds in compile_times.items():
    print(f"  {name:<22} {seconds:7.2f} s (one batch of {_BATCH.value})")
  for name, share in shares.items():
    print(f"  {name}: {share:.0f}%")
  ratios = {f"fused ({loop}) / sequential": rates[f"fused ({loop})"] / rates["sequential"]
            for loop in fused}
  for name, ratio in ratios.items():
    print(f"  ratio {name}: {ratio:.2f}x")
  report.emit(
      "Fused reuse" + (", mixed architectures" if families > 1 else ""),
      f"{describe(experts)}, batch {_BATCH.value}, "
      f"{jax.device_count()} {jax.default_backend()} device(s), median of {_REPEATS.value} "
      f"alternating rounds of one pass over {_IMAGES.value} images each",
      {**{name: (rate, "images/s") for name, rate in rates.items()},
       **{name: (seconds, "s") for name, seconds in compile_times.items()},
       **{name: (share, "%") for name, share in shares.items()}},
      ratios)


if __name__ == "__main__":
  app.run(main)
