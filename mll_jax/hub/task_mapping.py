"""A target task's class names -> SDAG nodes (shared/design/mll.md, section 3): exact name,
then synonym, then normalised string similarity. Names that match nothing are reported, never
dropped silently and never a crash."""

import dataclasses
import difflib

from mll_jax.hub import sdag

SIMILARITY_THRESHOLD = 0.85


@dataclasses.dataclass(frozen=True)
class ClassMapping:
  """How one target class name was mapped. `how` is "name", "synonym", "similar" or "none";
  `score` is 1.0 for exact matches and the similarity ratio otherwise."""
  name: str
  node: str | None
  how: str
  score: float
  alternatives: tuple[str, ...] = ()  # other nodes the same name matches (ambiguity)

  @property
  def mapped(self) -> bool:
    return self.node is not None


def map_class(name: str, graph: sdag.SDAG,
              threshold: float = SIMILARITY_THRESHOLD) -> ClassMapping:
  """The node for `name`: a node named so, else one with it as a synonym, else the node whose
  normalised name or synonym is most similar (ratio >= `threshold`)."""
  key = sdag.normalise(name)
  found = graph.lookup(name)
  if found:
    how = "name" if sdag.normalise(graph.nodes[found[0]].name) == key else "synonym"
    return ClassMapping(name, found[0], how, 1.0, tuple(found[1:]))
  names = graph.names()
  close = difflib.get_close_matches(key, names, n=1, cutoff=threshold)
  if close:
    score = difflib.SequenceMatcher(None, key, close[0]).ratio()
    nodes = names[close[0]]
    return ClassMapping(name, nodes[0], "similar", score, tuple(nodes[1:]))
  return ClassMapping(name, None, "none", 0.0)


def map_classes(names, graph: sdag.SDAG,
                threshold: float = SIMILARITY_THRESHOLD) -> list[ClassMapping]:
  """`map_class` for each name; two names mapped to one node are an error naming both, since
  the task could not tell them apart."""
  mappings = [map_class(n, graph, threshold) for n in names]
  seen = {}
  for m in mappings:
    if m.node is not None and m.node in seen:
      raise ValueError(f"Target classes {seen[m.node]!r} and {m.name!r} both map to the concept "
                       f"{graph.nodes[m.node].name!r} ({m.node}); give distinct classes.")
    seen.setdefault(m.node, m.name)
  return mappings
