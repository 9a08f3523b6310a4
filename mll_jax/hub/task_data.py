"""Images of a data set for hub commands: the test images of a task's classes (zero-shot
evaluation) and a small labelled subset of a training split (transferability ranking)."""

import numpy as np

from mll_jax.data import class_subsets, label_fractions, pipeline, sources
from mll_jax.hub import sdag


def _source(name: str, split: str, manual_dir: str | None):
  builder = sources.get_builder(name, None, manual_dir if name.startswith("idx/") else None)
  return sources.info(builder), sources.data_source(builder, split)


def task_images(name: str, classes, split: str = "test", image_size: int = 28,
                channels: int = 1, manual_dir: str | None = None,
                max_examples: int | None = None):
  """`(images, labels)` of `split` restricted to `classes` (matched to the data set's class
  names after normalisation), labels = index in `classes`."""
  info, source = _source(name, split, manual_dir)
  by_key = {sdag.normalise(c): c for c in info.class_names}
  missing = [c for c in classes if sdag.normalise(c) not in by_key]
  if missing:
    raise sources.DataError(f"{name} has no class {', '.join(map(repr, missing))}; its "
                            f"classes: {', '.join(info.class_names)}.")
  indices = class_subsets.resolve([by_key[sdag.normalise(c)] for c in classes],
                                  info.class_names)
  arrays = pipeline.eval_arrays(class_subsets.apply(source, indices), size=image_size,
                                channels=channels, max_examples=max_examples)
  return arrays["image"], arrays["label"]


def labelled_images(name: str, labels_spec: str, seed: int = 0, split: str = "train",
                    image_size: int = 28, channels: int = 1, manual_dir: str | None = None):
  """`(images, labels)` of a class-balanced labelled subset (`"10%"`, `"k=5"`) of `split`."""
  info, source = _source(name, split, manual_dir)
  chosen, _ = label_fractions.split_labelled(label_fractions.split_labels(source), labels_spec,
                                             seed, info.class_names)
  arrays = pipeline.eval_arrays(label_fractions.Subset(source, chosen), size=image_size,
                                channels=channels)
  return arrays["image"], arrays["label"]
