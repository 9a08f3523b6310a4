"""Human-readable views of a hub: the entry table and a model label's per-head summary."""

import numpy as np

from mll_jax.hub import concept_graph, labeling


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


def _solve_status(chosen) -> str:
  if chosen.converged:
    return f"converged in {chosen.iterations} FISTA steps"
  return (f"NOT converged after {chosen.iterations} FISTA steps: the weights and objective are "
          "approximate; raise max_steps")


def selection_summary(chosen) -> str:
  """Coverage per target class, the chosen experts and their head weights, and the cost."""
  rows = [["class", "concept", "match", "pool", "best head", "F1", "status"]]
  for c in chosen.coverage:
    rows.append([c.name, c.node or "-", c.how, str(c.pool_images), c.best_head or "-",
                 f"{c.best_f1:.2f}", c.status + (f" ({c.reason})" if c.reason else "")])
  covered = [n for n, ok in zip(chosen.classes, chosen.covered) if ok]
  lines = ["Coverage:", _table(rows), "",
           f"Selected ({chosen.method}): {len(chosen.models)} model(s), "
           f"{chosen.flops_per_image / 1e6:.1f} MFLOPs/image"
           + (f", objective {chosen.objective:.4f} ({_solve_status(chosen)})"
              if chosen.method == "chco" else "")]
  weights = [["head", *covered]]
  for (ref, c), row in zip(chosen.heads, chosen.weights):
    weights.append([f"{ref}:{c}", *(f"{w:+.3f}" for w in row)])
  if len(weights) > 1:
    lines.append(_table(weights))
  return "\n".join(lines)
