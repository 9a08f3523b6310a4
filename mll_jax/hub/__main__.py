"""The hub's command line.

    python -m mll_jax.hub --hub_dir=DIR pools --data=animal_mnist,idx/mnist [--cap=50]
    python -m mll_jax.hub --hub_dir=DIR register NAME --workdir=RUN   # labels it on the pools
    python -m mll_jax.hub --hub_dir=DIR list
    python -m mll_jax.hub --hub_dir=DIR show NAME[@V]
    python -m mll_jax.hub --hub_dir=DIR label NAME[@V]      # label now (if not yet), show views
    python -m mll_jax.hub --hub_dir=DIR remove NAME[@V]
    python -m mll_jax.hub --hub_dir=DIR verify [NAME[@V]]   # checksums; exit 1 on a problem
    python -m mll_jax.hub --hub_dir=DIR select --classes=zebra,horse,cat [--lam=0.01]
    python -m mll_jax.hub --hub_dir=DIR evaluate --classes=zebra,horse,cat --data=animal_mnist
    python -m mll_jax.hub --hub_dir=DIR rank --data=animal_mnist --labels=10% [--metric=logme]
    python -m mll_jax.hub --hub_dir=DIR export NAME[@V] FILE.tar  # one archive, to share
    python -m mll_jax.hub --hub_dir=DIR import FILE.tar           # verified, then committed
"""

if __name__ == "__main__":  # the process is set up (allocator, libtpu) before JAX loads
  from mll_jax import command
  command.start()

import json
import sys

from absl import app, flags

from mll_jax.hub import report

_HUB_DIR = flags.DEFINE_string("hub_dir", None, "The hub's directory.", required=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "register: the training run to register.")
_DATA = flags.DEFINE_list("data", None, "pools: data sets whose classes give the pools.")
_SPLIT = flags.DEFINE_string("split", "train", "pools: the split images are drawn from.")
_CAP = flags.DEFINE_integer("cap", 50, "pools: images per node at most.")
_MANUAL_DIR = flags.DEFINE_string("manual_dir", None, "pools: folder of IDX files (idx/...).")
_LABEL = flags.DEFINE_bool("label", True, "register: label on the hub's pools if it has any.")
_CLASSES = flags.DEFINE_list("classes", None, "select/evaluate: the target class names.")
_LAM = flags.DEFINE_float("lam", 1e-2, "select/evaluate: CHCO's cost penalty lambda.")
_BUDGET = flags.DEFINE_integer("budget", None, "select/evaluate: at most this many models.")
_METHOD = flags.DEFINE_enum("method", "chco", ["chco", "topk"], "select/evaluate: selector.")
_LABELS = flags.DEFINE_string("labels", "10%", "rank: the labelled subset of the train split.")
_METRIC = flags.DEFINE_enum("metric", "logme", ["logme", "leep", "nce", "hscore"],
                            "rank: transferability estimate.")

USAGE = __doc__


def _label_entry(hub, ref: str) -> None:
  from mll_jax.hub import labeling
  apply, variables = hub.load(ref)
  hub.add_label(ref, labeling.label_model(apply, variables, hub.load_pools()))


def _no_model_kept(hub, verb: str) -> None:
  """An empty selection: says so, with the lambda that would keep a model; `evaluate` stops
  (an empty ensemble's accuracy is chance, not a result)."""
  from mll_jax.hub import selection
  lam = selection.lam_keeping_a_model(hub, _CLASSES.value, _LAM.value, budget=_BUDGET.value)
  hint = (f"--lam={lam:g} keeps at least one" if lam is not None else
          f"no lambda down to {_LAM.value * 1e-6:g} keeps one")
  message = (f"No model was kept: at --lam={_LAM.value:g} the cost penalty outweighs every "
             f"head's gain on these classes ({hint}).")
  if verb == "evaluate":
    sys.exit(f"error: {message} No accuracy is reported for an empty selection.")
  print(message)


def selection_errors():
  from mll_jax.hub import selection
  return selection.EmptyHub


def main(argv):
  from mll_jax import checkpoint
  from mll_jax.data import sources
  from mll_jax.hub import registry, run_import
  verb, *args = argv[1:] or [""]
  try:
    hub = registry.Hub(_HUB_DIR.value, create=verb in ("register", "pools", "import"))
    if verb == "pools" and _DATA.value:
      from mll_jax.hub import pool_sources
      pools = pool_sources.pools_from_datasets(_DATA.value, _SPLIT.value, _CAP.value,
                                               manual_dir=_MANUAL_DIR.value)
      hub.set_pools(pools)
      print(f"Pools: {len(pools.images)} images, {len(pools.node_ids)} nodes.")
    elif verb == "register" and len(args) == 1 and _WORKDIR.value:
      architecture, variables, classes, config = run_import.read_run(_WORKDIR.value)
      nodes = run_import.class_nodes(config.data.name, classes)
      label = None
      if _LABEL.value and hub.pools_path.exists():
        from mll_jax.hub import functional, labeling
        label = labeling.label_model(functional.apply_fn(architecture), variables,
                                     hub.load_pools())
      entry = hub.register(args[0], architecture, variables, classes, nodes, label=label,
                           source=str(_WORKDIR.value))
      print(f"Registered {entry.ref}: {len(classes)} classes, "
            f"{entry.flops_per_image / 1e6:.1f} MFLOPs/image, "
            f"{'labelled' if label is not None else 'not labelled (the hub has no pools)'}.")
    elif verb == "list" and not args:
      print(report.hub_table(hub))
    elif verb == "show" and len(args) == 1:
      entry = hub.show(args[0])
      print(json.dumps(entry.to_json(), indent=1))
      print(report.label_summary(hub, entry.ref))
    elif verb == "label" and len(args) == 1:
      ref = hub.resolve(args[0])
      if hub.load_label(ref) is None:
        _label_entry(hub, ref)
      print(report.label_summary(hub, ref))
    elif verb == "remove" and len(args) == 1:
      print(f"Removed {hub.remove(args[0])}.")
    elif verb == "verify" and len(args) <= 1:
      problems_by_ref = hub.verify(args[0] if args else None)
      for ref, problems in problems_by_ref.items():
        print(f"{ref}: {'ok' if not problems else '; '.join(problems)}")
      if any(problems_by_ref.values()):
        sys.exit(1)
    elif verb in ("select", "evaluate") and not args and _CLASSES.value and \
        (verb == "select" or _DATA.value):
      from mll_jax.hub import reuse, selection, task_data
      if verb == "evaluate":  # the data set must have the classes: checked before selecting
        images, labels = task_data.task_images(_DATA.value[0], _CLASSES.value,
                                               manual_dir=_MANUAL_DIR.value)
      chosen = selection.select(hub, _CLASSES.value, lam=_LAM.value, budget=_BUDGET.value,
                                method=_METHOD.value)
      print(report.selection_summary(chosen))
      if not chosen.models:
        _no_model_kept(hub, verb)
      if verb == "evaluate":
        accuracy = reuse.build(chosen, hub).evaluate(images, labels)
        print(f"Zero-shot accuracy on {len(images)} {_DATA.value[0]} test images of "
              f"{len(_CLASSES.value)} classes: {accuracy:.4f}")
    elif verb == "export" and len(args) == 2:
      from mll_jax.hub import sharing
      ref = sharing.export_entry(hub, args[0], args[1])
      print(f"Exported {ref} to {args[1]}.")
    elif verb == "import" and len(args) == 1:
      from mll_jax.hub import sharing
      ref, how = sharing.import_entry(hub, args[0])
      print(f"Imported {ref}: {how}.")
    elif verb == "rank" and not args and _DATA.value:
      from mll_jax.hub import ranking, task_data
      images, labels = task_data.labelled_images(_DATA.value[0], _LABELS.value,
                                                 manual_dir=_MANUAL_DIR.value)
      print(f"{_METRIC.value} on {len(images)} labelled {_DATA.value[0]} images:")
      for r in ranking.rank(hub, images, labels, _METRIC.value):
        print(f"  {r.ref:<24} {r.score:10.4f}")
    else:
      raise app.UsageError(USAGE)
  except (registry.HubError, run_import.RunImportError, checkpoint.CheckpointError,
          sources.DataError, selection_errors()) as e:
    sys.exit(f"error: {e}")


if __name__ == "__main__":
  app.run(main)
