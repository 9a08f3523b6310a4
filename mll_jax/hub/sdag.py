"""The semantic graph of concepts (SDAG): nodes are concepts, an edge `u -> v` says "v is a kind
of u". A node may have several parents, so it is a DAG, not a tree (docs: shared/design/mll.md,
section 1). The graph is data: JSON on disk, validated on load.

JSON layout (`FORMAT`):

    {"format": "mll_jax.sdag/1",
     "nodes": [{"id": "n02084071", "name": "dog", "synonyms": ["domestic dog"]}, ...],
     "edges": [["n01317541", "n02084071"], ...]}          # [parent, child]
"""

import collections
import dataclasses
import json
import os
import pathlib
import re
import unicodedata
from typing import Iterable

FORMAT = "mll_jax.sdag/1"


class SDAGError(ValueError):
  """An invalid graph: cycles, dangling edges, duplicate ids, malformed JSON."""


@dataclasses.dataclass(frozen=True)
class Node:
  """A concept: a stable id (a WordNet offset such as `n02084071`, or any string), a display name
  and synonyms used by name lookup."""
  id: str
  name: str
  synonyms: tuple[str, ...] = ()


def normalise(text: str) -> str:
  """Lower case, accents stripped, `_`/`-`/punctuation as spaces, whitespace collapsed:
  `"Great_Dane"`, `"great-dane"` and `" GREAT  Dane "` all give `"great dane"`."""
  text = unicodedata.normalize("NFKD", text)
  text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower()
  return " ".join(re.sub(r"[^0-9a-z]+", " ", text).split())


class SDAG:
  """A validated concept graph with ancestor / descendant queries and name lookup."""

  def __init__(self, nodes: Iterable[Node], edges: Iterable[tuple[str, str]]):
    self.nodes: dict[str, Node] = {}
    duplicates = []
    for node in nodes:
      if not isinstance(node.id, str) or not node.id:
        raise SDAGError(f"A node has an empty or non-string id ({node!r}); give every node a "
                        "non-empty string id.")
      if node.id in self.nodes:
        duplicates.append(node.id)
      self.nodes[node.id] = node
    if duplicates:
      raise SDAGError(f"Duplicate node ids: {', '.join(sorted(set(duplicates)))}. Each id must "
                      "appear once; merge the duplicates' synonyms into one node.")
    self.children: dict[str, list[str]] = {i: [] for i in self.nodes}
    self.parents: dict[str, list[str]] = {i: [] for i in self.nodes}
    dangling = []
    for parent, child in edges:
      if parent not in self.nodes or child not in self.nodes:
        dangling.append(f"{parent} -> {child}")
        continue
      if child not in self.children[parent]:
        self.children[parent].append(child)
        self.parents[child].append(parent)
    if dangling:
      raise SDAGError(f"Edges name nodes that do not exist: {'; '.join(dangling[:10])}"
                      f"{' ...' if len(dangling) > 10 else ''}. Add the nodes or drop the edges.")
    cycle = self._find_cycle()
    if cycle:
      raise SDAGError(f"The graph has a cycle: {' -> '.join(cycle)}. An SDAG must be acyclic; "
                      "remove one of these edges.")
    self._by_name = collections.defaultdict(list)
    for node in self.nodes.values():
      for text in dict.fromkeys((node.name, *node.synonyms)):
        key = normalise(text)
        if key and node.id not in self._by_name[key]:
          self._by_name[key].append(node.id)

  def _find_cycle(self) -> list[str] | None:
    """One cycle as `[a, b, ..., a]`, or None; iterative DFS (graphs have 10^5 nodes)."""
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(self.nodes, white)
    for root in self.nodes:
      if colour[root] != white:
        continue
      path, stack = [], [(root, iter(self.children[root]))]
      colour[root] = grey
      path.append(root)
      while stack:
        node, children = stack[-1]
        child = next(children, None)
        if child is None:
          colour[node] = black
          stack.pop()
          path.pop()
        elif colour[child] == grey:
          return path[path.index(child):] + [child]
        elif colour[child] == white:
          colour[child] = grey
          path.append(child)
          stack.append((child, iter(self.children[child])))
    return None

  def __contains__(self, node_id: str) -> bool:
    return node_id in self.nodes

  def __len__(self) -> int:
    return len(self.nodes)

  def _check(self, node_id: str) -> None:
    if node_id not in self.nodes:
      raise KeyError(f"No SDAG node {node_id!r}; look names up with SDAG.lookup(name).")

  def _closure(self, node_id: str, links: dict, include_self: bool) -> set[str]:
    self._check(node_id)
    seen, todo = set(), [node_id]
    while todo:
      for other in links[todo.pop()]:
        if other not in seen:
          seen.add(other)
          todo.append(other)
    return seen | {node_id} if include_self else seen

  def ancestors(self, node_id: str, include_self: bool = False) -> set[str]:
    """Every node that `node_id` is a kind of (transitively)."""
    return self._closure(node_id, self.parents, include_self)

  def descendants(self, node_id: str, include_self: bool = False) -> set[str]:
    """Every kind of `node_id` (transitively); `desc(v)` of mll.md is `include_self=True`."""
    return self._closure(node_id, self.children, include_self)

  def lowest_common_ancestors(self, a: str, b: str) -> set[str]:
    """Common ancestors (each node counts as its own) that have no common ancestor below them;
    several in a DAG, empty when the two share no ancestor."""
    common = self.ancestors(a, True) & self.ancestors(b, True)
    return {n for n in common if not (self.descendants(n) & common)}

  def roots(self) -> list[str]:
    """Nodes without parents."""
    return [n for n, parents in self.parents.items() if not parents]

  def lookup(self, name: str) -> list[str]:
    """Ids of the nodes whose name or a synonym equals `name` after `normalise`; names first,
    in graph order. Empty when nothing matches."""
    found = self._by_name.get(normalise(name), [])
    return sorted(found, key=lambda i: normalise(self.nodes[i].name) != normalise(name))

  def names(self) -> dict[str, list[str]]:
    """Normalised name or synonym -> node ids (for fuzzy matching by callers)."""
    return dict(self._by_name)

  def to_dict(self) -> dict:
    """The JSON layout of the module docstring (nodes and edges in a stable order)."""
    return {"format": FORMAT,
            "nodes": [{"id": n.id, "name": n.name, "synonyms": list(n.synonyms)}
                      for n in self.nodes.values()],
            "edges": [[p, c] for p in self.nodes for c in self.children[p]]}

  @classmethod
  def from_dict(cls, data: dict, source: str = "the SDAG") -> "SDAG":
    """Validates the layout, then the graph."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
      raise SDAGError(f"{source} is not an SDAG file: expected a JSON object with "
                      f"\"format\": \"{FORMAT}\".")
    try:
      nodes = [Node(str(n["id"]), str(n.get("name", n["id"])),
                    tuple(str(s) for s in n.get("synonyms", ()))) for n in data["nodes"]]
      edges = [(str(p), str(c)) for p, c in data["edges"]]
    except (KeyError, TypeError, ValueError) as e:
      raise SDAGError(f"{source} is malformed ({type(e).__name__}: {e}): nodes need an \"id\", "
                      "edges are [parent, child] pairs.") from None
    return cls(nodes, edges)


def load(path: str | os.PathLike) -> SDAG:
  """Reads and validates an SDAG JSON file."""
  path = pathlib.Path(path)
  try:
    data = json.loads(path.read_text())
  except FileNotFoundError:
    raise SDAGError(f"No SDAG file at {str(path)!r}.") from None
  except json.JSONDecodeError as e:
    raise SDAGError(f"{str(path)!r} is not valid JSON: {e}.") from None
  return SDAG.from_dict(data, source=repr(str(path)))


def save(graph: SDAG, path: str | os.PathLike) -> None:
  """Writes `graph` as JSON, one node or edge per line (readable diffs), atomically: a
  temporary file in the same folder renamed into place."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  data = graph.to_dict()
  rows = lambda items: ",\n".join("  " + json.dumps(item) for item in items)
  text = (f'{{"format": {json.dumps(data["format"])},\n"nodes": [\n{rows(data["nodes"])}\n],\n'
          f'"edges": [\n{rows(data["edges"])}\n]}}\n')
  staging = path.parent / f".{path.name}.{os.getpid()}.tmp"
  staging.write_text(text)
  os.replace(staging, path)
