"""Recipe probe, validation only: do horizontal flips help the hub's animal experts?

    python -m experiments.recipe_searches.recipe_probe_expert_flips --hub_runs=runs/hub_runs [--experts=farm]

The 1% probe (recipe_probe_few_labels.md) found flips of animal_mnist's doodles worth +0.038
to a fine-tuned CNN; the hub's animal experts are fine-tuned with shifts only, and three of them
fall short (`farm` under its 0.93 target, `equines` and `wild` under 1-NN on pixels). This
trains each named expert again, as `experiments/hub_experts.py` configures it, with
`data.augment=shift+flip`, and compares its validation accuracy (its classes' 10% holdout) with
the hub build's own run of it in `--hub_runs` (run experiments/build_hub.py first). Test is
logged once at each run's end, as in every run; it is not read here.
Writes `recipe_probe_expert_flips.{md,json}`.
"""

import json
import pathlib

from absl import app, flags

REPO = pathlib.Path(__file__).resolve().parents[1]

if __name__ == "__main__":  # the process is set up (allocator, libtpu) before JAX loads
  from mll_jax import command
  command.start()

from experiments import curves, hub_experts  # noqa: E402
from mll_jax import sweep, train  # noqa: E402

_HUB_RUNS = flags.DEFINE_string("hub_runs", "runs/hub_runs", "The hub build's runs folder.")
_EXPERTS = flags.DEFINE_list("experts", list(hub_experts.ANIMAL_EXPERTS),
                             "Animal experts to probe.")
_OUT = flags.DEFINE_string("probe_out", str(REPO / "experiments" / "results"),
                           "Results folder.")
_WORKDIR = flags.DEFINE_string("probe_runs", "runs/recipe_probe_expert_flips", "Runs folder.")

AUGMENT = "shift+flip"


def main(argv):
  del argv
  train.setup_runtime()
  hub_runs, probe_runs = pathlib.Path(_HUB_RUNS.value), pathlib.Path(_WORKDIR.value)
  unknown = sorted(set(_EXPERTS.value) - set(hub_experts.ANIMAL_EXPERTS))
  if unknown:
    raise app.UsageError(f"--experts: unknown {', '.join(unknown)}; animal experts: "
                         f"{', '.join(hub_experts.ANIMAL_EXPERTS)}.")
  missing = [n for n in _EXPERTS.value if not (hub_runs / n / "metrics.jsonl").exists()]
  if missing:
    raise app.UsageError(f"--hub_runs={hub_runs}: no build run of {', '.join(missing)}; run "
                         "experiments/build_hub.py first (or point --hub_runs at its runs).")
  results = {}
  for name in _EXPERTS.value:
    classes = hub_experts.ANIMAL_EXPERTS[name]
    config = hub_experts.expert_config(hub_runs, "animal_mnist", classes, False, None)
    config = sweep.apply_overrides(config, {"data.augment": AUGMENT})
    train.run(config, probe_runs / name)
    shift, flip = curves.read(hub_runs / name), curves.read(probe_runs / name)
    results[name] = {"classes": classes, "steps": flip[-1][0],
                     "shift": shift[-1][1], "shift_best": max(v for _, v in shift),
                     "shift+flip": flip[-1][1], "shift+flip_best": max(v for _, v in flip)}
    print(name, results[name], flush=True)
  out = pathlib.Path(_OUT.value)
  (out / "recipe_probe_expert_flips.json").write_text(json.dumps(results, indent=1) + "\n")
  rows = [f"| {n} | {r['classes']} | {r['steps']} | {r['shift']:.3f} (best {r['shift_best']:.3f}) "
          f"| {r['shift+flip']:.3f} (best {r['shift+flip_best']:.3f}) | "
          f"{r['shift+flip'] - r['shift']:+.3f} |" for n, r in results.items()]
  (out / "recipe_probe_expert_flips.md").write_text(
      "# Recipe probe: horizontal flips for the hub's animal experts (validation only)\n\n"
      "Command: `python -m experiments.recipe_searches.recipe_probe_expert_flips` (one seed; each expert's "
      "validation holdout, 10% of its classes' training images).\n\n"
      "| expert | classes | steps | `shift` (the hub build) | `shift+flip` | change |\n"
      "|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n")


if __name__ == "__main__":
  app.run(main)
