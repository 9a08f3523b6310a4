"""The feature spec every offline builder writes: raw uint8 image tensor + class label.

Images are stored as raw tensors, not PNG: TFDS's PNG encoder needs TensorFlow, and for
small images raw bytes are also faster to read.
"""

import numpy as np
import tensorflow_datasets as tfds


def image_classification(height: int, width: int, channels: int,
                         class_names: list[str]) -> tfds.features.FeaturesDict:
  return tfds.features.FeaturesDict({
      "image": tfds.features.Tensor(shape=(height, width, channels), dtype=np.uint8),
      "label": tfds.features.ClassLabel(names=class_names),
  })
