"""scikit-learn's 1,797 8x8 handwritten digits (always installed), as a TFDS data set."""

import numpy as np
import tensorflow_datasets as tfds
from sklearn import datasets as sk_datasets

from mll_jax.data.builders import features, in_memory


class Digits(in_memory.InMemoryBuilder):
  """sklearn `load_digits`, pixel values 0..16 scaled to 0..255, split 80/20 by class."""

  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self, description="sklearn load_digits (UCI optical digits), 8x8 grey.",
        features=features.image_classification(8, 8, 1, [str(i) for i in range(10)]),
        supervised_keys=("image", "label"))

  def load_arrays(self):
    digits = sk_datasets.load_digits()
    images = np.clip(digits.images * 16, 0, 255).astype(np.uint8)[..., None]
    return images, digits.target.astype(np.int64)
