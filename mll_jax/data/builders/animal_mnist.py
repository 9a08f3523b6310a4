"""Animal-MNIST: 10,000 28x28 grey animal silhouettes in 10 classes, from the PyPI package.

`pip install --no-deps animal-mnist` ships the arrays as gzipped numpy pickles. Unpickling runs
code from the file, so we never do it (house rule: no pickle on data from elsewhere). Instead
`pickletools.genops` walks the opcode stream without executing anything, and we take the
array's raw bytes and dtype code from it. The package's own module needs TensorFlow, so it is
located with importlib without being imported.
"""

import gzip
import importlib.util
import pathlib
import pickletools
import re

import numpy as np
import tensorflow_datasets as tfds

from mll_jax.data.builders import features, in_memory

CLASS_NAMES = ["bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep",
               "zebra"]
_IMAGES_FILE = "animal_data_version_3.gz"
_LABELS_FILE = "animal_label_version_3.gz"
INSTALL_HINT = "pip install --no-deps animal-mnist"


def package_data_dir() -> pathlib.Path:
  """Folder of the installed animal-mnist data files, found without importing the package."""
  spec = importlib.util.find_spec("animal_mnist")
  if spec is None or not spec.submodule_search_locations:
    raise FileNotFoundError(
        f"The animal_mnist data set needs the 'animal-mnist' package's files: {INSTALL_HINT} "
        "(--no-deps: its own code needs TensorFlow, which mll_jax does not use).")
  folder = pathlib.Path(list(spec.submodule_search_locations)[0]) / "data" / "Animal_MNIST"
  if not (folder / _IMAGES_FILE).exists():
    raise FileNotFoundError(f"{folder / _IMAGES_FILE} is missing; reinstall: {INSTALL_HINT}.")
  return folder


def read_pickled_array(path: pathlib.Path) -> np.ndarray:
  """The single numpy array in a gzipped pickle, read from the opcodes without unpickling."""
  with gzip.open(path, "rb") as f:
    stream = f.read()
  payloads, strings = [], []
  for opcode, arg, _ in pickletools.genops(stream):
    if opcode.name in ("BINBYTES", "SHORT_BINBYTES", "BINBYTES8"):
      payloads.append(arg)
    elif isinstance(arg, str):
      strings.append(arg)
  dtype_codes = [s for s in strings if re.fullmatch(r"[biuf][1248]", s)]
  if not payloads or len(dtype_codes) != 1:
    raise ValueError(f"{path} does not hold exactly one plain numpy array.")
  byte_order = "<" if "<" in strings else (">" if ">" in strings else "|")
  # ndarray.__reduce__ also passes a 1-byte b"b" argument; the array's data is the largest.
  data = max(payloads, key=len)
  return np.frombuffer(data, dtype=np.dtype(byte_order + dtype_codes[0]))


def load_arrays() -> tuple[np.ndarray, np.ndarray]:
  """`(images [N, 28, 28, 1] uint8, labels [N] int64)` from the installed package."""
  folder = package_data_dir()
  images = read_pickled_array(folder / _IMAGES_FILE).astype(np.uint8).reshape(-1, 28, 28, 1)
  labels = read_pickled_array(folder / _LABELS_FILE).astype(np.int64)
  if len(images) != len(labels) or labels.min() < 0 or labels.max() >= len(CLASS_NAMES):
    raise ValueError("The animal-mnist files are inconsistent (image/label counts or label "
                     "range); reinstall the package.")
  return images, labels


class AnimalMnist(in_memory.InMemoryBuilder):
  """Animal-MNIST with a fixed stratified 80/20 train/test split (seed 0)."""

  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self, features=features.image_classification(28, 28, 1, CLASS_NAMES),
        supervised_keys=("image", "label"),
        description="Animal silhouettes (PyPI animal-mnist 0.4), split 80/20 by class.")

  def load_arrays(self):
    return load_arrays()
