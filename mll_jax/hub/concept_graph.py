"""The SDAG shipped with mll_jax (generated from WordNet by `mll_jax.hub.wordnet_graph`), so the
hub works on machines without WordNet: the concepts of animal_mnist, MNIST / digits, CIFAR-10,
CIFAR-100 and ImageNet-1k with all their WordNet hypernyms."""

import functools
import json
import pathlib

from mll_jax.hub import sdag

DATA_DIR = pathlib.Path(__file__).parent / "data"
GRAPH_FILE = "sdag.json"
CLASS_NODES_FILE = "class_nodes.json"


@functools.cache
def default_graph() -> sdag.SDAG:
  """The shipped SDAG (loaded and validated once per process)."""
  return sdag.load(DATA_DIR / GRAPH_FILE)


@functools.cache
def _class_nodes() -> dict[str, dict[str, str]]:
  return json.loads((DATA_DIR / CLASS_NODES_FILE).read_text())


def datasets() -> list[str]:
  """Data sets whose classes the shipped graph maps."""
  return sorted(_class_nodes())


def class_nodes(dataset: str) -> dict[str, str]:
  """Class name -> SDAG node id for a known data set (`animal_mnist`, `mnist`, ...); a TFDS
  name such as `idx/mnist` or `cifar10:3.0.2` is reduced to its base name."""
  base = dataset.split(":")[0].split("/")[-1]
  known = _class_nodes()
  if base not in known:
    raise KeyError(f"No SDAG classes for data set {dataset!r}; known: {', '.join(sorted(known))}. "
                   "Map its classes yourself with SDAG.lookup, or add it to "
                   "mll_jax/hub/dataset_concepts.py and rerun `python -m "
                   "mll_jax.hub.wordnet_graph`.")
  return dict(known[base])
