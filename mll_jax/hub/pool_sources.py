"""Labelling pools from the data sets mll_jax knows: for each class with an SDAG node, up to
`cap` images of a split, chosen with a seed, in the pools' common image format."""

import numpy as np

from mll_jax.data import label_fractions, sources, transforms
from mll_jax.hub import concept_graph, labeling, sdag


def pools_from_datasets(names: list[str], split: str = "train", cap: int = 50, seed: int = 0,
                        image_size: int = 28, channels: int = 1, data_dir: str | None = None,
                        manual_dir: str | None = None,
                        graph: sdag.SDAG | None = None) -> labeling.Pools:
  """Pools over the classes of `names` (e.g. `["animal_mnist", "idx/mnist"]`), images resized
  to `image_size` x `image_size` x `channels` so every model of that input shape can be
  labelled on them."""
  graph = graph or concept_graph.default_graph()
  rng = np.random.default_rng(seed)
  transform = transforms.EvalTransform(image_size, channels)
  pool_sources = []
  for name in names:
    builder = sources.get_builder(name, data_dir, manual_dir if name.startswith("idx/") else None)
    info = sources.info(builder)
    nodes = concept_graph.class_nodes(name)
    source = sources.data_source(builder, split)
    labels = label_fractions.split_labels(source)
    chosen = np.sort(np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:cap]
                                     for c in range(info.num_classes)]))
    images = np.stack([transform(source[int(i)])["image"] for i in chosen])
    label_nodes = {c: nodes.get(n, "") for c, n in enumerate(info.class_names)}
    pool_sources.append((images, labels[chosen], label_nodes))
  return labeling.build_pools(pool_sources, graph, cap=cap, seed=seed)
