"""IDX files (the format of MNIST, Fashion-MNIST, KMNIST and EMNIST) from a local folder.

Point `manual_dir` at a folder holding the four files of one data set (gzipped or not), e.g.
`train-images-idx3-ubyte.gz`, `train-labels-idx1-ubyte.gz`, `t10k-images-idx3-ubyte.gz`,
`t10k-labels-idx1-ubyte.gz`. One builder config per known data set fixes class names and
orientation (`idx/mnist`, `idx/fashion_mnist`, `idx/kmnist`, `idx/emnist_digits`).
"""

import dataclasses
import gzip
import pathlib

import numpy as np
import tensorflow_datasets as tfds

from mll_jax.data.builders import features

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | pathlib.Path) -> np.ndarray:
  """Reads one IDX file (optionally .gz) into a numpy array, checking its header."""
  path = pathlib.Path(path)
  opener = gzip.open if path.suffix == ".gz" else open
  with opener(path, "rb") as f:
    data = f.read()
  if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
    raise ValueError(f"{path} is not an IDX file (bad magic number).")
  ndim = data[3]
  shape = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
  dtype = np.dtype(_IDX_DTYPES[data[2]])
  expected = int(np.prod(shape)) * dtype.itemsize
  body = data[4 + 4 * ndim:]
  if len(body) != expected:
    raise ValueError(f"{path} is truncated or padded: header says {shape} ({expected} bytes), "
                     f"file holds {len(body)} bytes.")
  return np.frombuffer(body, dtype).reshape(shape)


def write_idx(path: str | pathlib.Path, array: np.ndarray) -> None:
  """Writes a uint8 array as an IDX file (used to make small test fixtures)."""
  array = np.ascontiguousarray(array, np.uint8)
  header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
  opener = gzip.open if str(path).endswith(".gz") else open
  with opener(path, "wb") as f:
    f.write(header + array.tobytes())


def find_file(folder: pathlib.Path, split: str, kind: str) -> pathlib.Path:
  """The one file in `folder` for a split ('train'/'test') and kind ('images'/'labels')."""
  split_words = ("train",) if split == "train" else ("t10k", "test")
  found = sorted(p for p in folder.iterdir()
                 if not p.name.startswith("._") and kind in p.name and "idx" in p.name
                 and any(w in p.name for w in split_words))
  if len(found) != 1:
    raise FileNotFoundError(
        f"Expected one IDX {split} {kind} file in {folder}, found {[p.name for p in found]}. "
        "Pass the folder holding the four IDX files as --manual_dir (config.data.manual_dir).")
  return found[0]


@dataclasses.dataclass
class IdxConfig(tfds.core.BuilderConfig):
  class_names: tuple[str, ...] = ()
  transpose: bool = False  # EMNIST stores images column-major.


_DIGITS = tuple(str(i) for i in range(10))


class Idx(tfds.core.GeneratorBasedBuilder):
  """28x28 grey image classification from IDX files in `manual_dir`, one config a data set."""

  VERSION = tfds.core.Version("1.0.0")
  BUILDER_CONFIGS = [
      IdxConfig(name="mnist", class_names=_DIGITS),
      IdxConfig(name="fashion_mnist", class_names=(
          "t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
          "ankle_boot")),
      IdxConfig(name="kmnist", class_names=("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re",
                                            "wo")),
      IdxConfig(name="emnist_digits", class_names=_DIGITS, transpose=True),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Put the four IDX files (train/t10k images and labels, .gz or not) in one folder and "
      "pass it as manual_dir.")

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self, description="IDX image classification files from a local folder.",
        features=features.image_classification(28, 28, 1, list(self.builder_config.class_names)),
        supervised_keys=("image", "label"))

  def _split_generators(self, dl_manager):
    folder = pathlib.Path(dl_manager.manual_dir)
    return {split: self._generate_examples(folder, split) for split in ("train", "test")}

  def _generate_examples(self, folder, split):
    images = read_idx(find_file(folder, split, "images"))
    labels = read_idx(find_file(folder, split, "labels")).astype(np.int64)
    if images.shape[1:] != (28, 28):
      raise ValueError(f"IDX images in {folder} are {images.shape[1:]}, expected 28x28.")
    if len(images) != len(labels):
      raise ValueError(f"{folder}: {len(images)} {split} images but {len(labels)} labels.")
    if self.builder_config.transpose:
      images = images.transpose(0, 2, 1)
    for i in range(len(images)):
      yield i, {"image": images[i][..., None], "label": int(labels[i])}
