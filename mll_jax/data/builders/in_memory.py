"""Base builder for data sets that arrive as whole arrays, split 80/20 per class (seed 0)."""

import numpy as np
import tensorflow_datasets as tfds

from mll_jax.data.builders import splits


class InMemoryBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Subclasses provide `load_arrays() -> (images [N, H, W, C] uint8, labels [N])`."""

  TEST_FRACTION = 0.2

  def load_arrays(self) -> tuple[np.ndarray, np.ndarray]:
    raise NotImplementedError

  def _split_generators(self, dl_manager):
    del dl_manager  # Everything is local.
    images, labels = self.load_arrays()
    train, test = splits.stratified_split(labels, test_fraction=self.TEST_FRACTION, seed=0)
    return {"train": self._generate_examples(images, labels, train),
            "test": self._generate_examples(images, labels, test)}

  def _generate_examples(self, images, labels, indices):
    for i in indices:
      yield int(i), {"image": images[i], "label": int(labels[i])}
