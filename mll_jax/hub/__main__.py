"""The hub's command line.

    python -m mll_jax.hub --hub_dir=DIR pools --data=animal_mnist,idx/mnist [--cap=50]
    python -m mll_jax.hub --hub_dir=DIR register NAME --workdir=RUN   # labels it on the pools
    python -m mll_jax.hub --hub_dir=DIR list
    python -m mll_jax.hub --hub_dir=DIR show NAME[@V]
    python -m mll_jax.hub --hub_dir=DIR label NAME[@V]      # label now (if not yet), show views
    python -m mll_jax.hub --hub_dir=DIR remove NAME[@V]
    python -m mll_jax.hub --hub_dir=DIR verify [NAME[@V]]   # checksums; exit 1 on a problem
"""

import json
import sys

import numpy as np
from absl import app, flags

_HUB_DIR = flags.DEFINE_string("hub_dir", None, "The hub's directory.", required=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "register: the training run to register.")
_DATA = flags.DEFINE_list("data", None, "pools: data sets whose classes give the pools.")
_SPLIT = flags.DEFINE_string("split", "train", "pools: the split images are drawn from.")
_CAP = flags.DEFINE_integer("cap", 50, "pools: images per node at most.")
_MANUAL_DIR = flags.DEFINE_string("manual_dir", None, "pools: folder of IDX files (idx/...).")
_LABEL = flags.DEFINE_bool("label", True, "register: label on the hub's pools if it has any.")

USAGE = __doc__


def _table(rows: list[list[str]]) -> str:
  widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
  lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
  return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def hub_table(hub) -> str:
  """name, classes, nodes, FLOPs per image, size on disk, labelled: one row per entry."""
  rows = [["model", "classes", "nodes", "MFLOPs/img", "params", "size", "labelled"]]
  index = hub.index()
  for entry in hub.entries():
    record = index[entry.ref]
    rows.append([entry.ref, ",".join(entry.classes)[:48], str(record["nodes"]),
                 f"{entry.flops_per_image / 1e6:.1f}", f"{entry.parameters:,}",
                 f"{record['size_bytes'] / 1e6:.2f} MB",
                 "yes" if "label_sha256" in record else "no"])
  if len(rows) == 1:
    return f"The hub {hub.directory} is empty."
  total = sum(r["size_bytes"] for r in index.values())
  return _table(rows) + f"\n{len(rows) - 1} models, {total / 1e6:.1f} MB."


def label_summary(hub, ref: str, top: int = 3) -> str:
  """For each head, the nodes it detects best (F1 on the pools)."""
  from mll_jax.hub import concept_graph, labeling
  label = hub.load_label(ref)
  if label is None:
    return f"{ref} has no label yet (`label {ref}` computes it)."
  pools = hub.load_pools()
  views = labeling.head_scores(label["responses"], pools)
  graph = concept_graph.default_graph()
  name = lambda n: graph.nodes[n].name if n in graph else n
  entry = hub.show(ref)
  lines = [f"Model label of {ref}: {len(label['responses'])} pool images, "
           f"{len(pools.node_ids)} nodes."]
  for c, class_name in enumerate(entry.classes):
    best = np.argsort(-views["f1"][:, c])[:top]
    lines.append(f"  head {class_name:>12}: " + ", ".join(
        f"{name(pools.node_ids[k])} F1 {views['f1'][k, c]:.2f}" for k in best))
  return "\n".join(lines)


def _label_entry(hub, ref: str) -> None:
  from mll_jax.hub import labeling
  apply, variables = hub.load(ref)
  hub.add_label(ref, labeling.label_model(apply, variables, hub.load_pools()))


def main(argv):
  from mll_jax import checkpoint
  from mll_jax.data import sources
  from mll_jax.hub import registry, run_import
  verb, *args = argv[1:] or [""]
  try:
    hub = registry.Hub(_HUB_DIR.value, create=verb in ("register", "pools"))
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
      print(hub_table(hub))
    elif verb == "show" and len(args) == 1:
      entry = hub.show(args[0])
      print(json.dumps(entry.to_json(), indent=1))
      print(label_summary(hub, entry.ref))
    elif verb == "label" and len(args) == 1:
      ref = hub.resolve(args[0])
      if hub.load_label(ref) is None:
        _label_entry(hub, ref)
      print(label_summary(hub, ref))
    elif verb == "remove" and len(args) == 1:
      print(f"Removed {hub.remove(args[0])}.")
    elif verb == "verify" and len(args) <= 1:
      report = hub.verify(args[0] if args else None)
      for ref, problems in report.items():
        print(f"{ref}: {'ok' if not problems else '; '.join(problems)}")
      if any(report.values()):
        sys.exit(1)
    else:
      raise app.UsageError(USAGE)
  except (registry.HubError, run_import.RunImportError, checkpoint.CheckpointError,
          sources.DataError) as e:
    sys.exit(f"error: {e}")


if __name__ == "__main__":
  app.run(main)
