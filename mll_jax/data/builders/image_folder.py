"""Your own images: `config.data.name="folder:PATH"`, a folder of class subfolders of PNG/JPEG
files, prepared without TensorFlow into the same array_record format as the other sets.

    PATH/cat/0001.png  PATH/cat/0002.jpg  PATH/dog/...         (a seeded 80/20 split per class)
    PATH/train/cat/... PATH/test/cat/...                        (the folder's own split)

Class names are the subfolder names (sorted), so the hub and the SDAG mapping see real names.
Images of any size and channel count are stored at one size: the most common height x width
among them (read from the headers), scaled down to at most MAX_SIDE pixels on the longer side,
with 3 channels if any image has colour (else 1); the pipeline then resizes to
`config.data.image_size` and converts to `config.data.channels` as for every set. Files that
are not images, or that cannot be decoded (truncated, damaged), are skipped and counted:
preparation prints how many and which, and stops only if a class is left empty.

The prepared copy is keyed by a fingerprint of the folder (every file's relative path, size and
modification time): a changed folder is a new preparation, never the stale copy.
"""

import collections
import dataclasses
import hashlib
import json
import pathlib
import re

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image, UnidentifiedImageError

from mll_jax.data.builders import features, splits

MAX_SIDE = 256
SHAPE_RECORD = "mll_jax_shape.json"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
TEST_FRACTION = 0.2


class FolderError(ValueError):
  """A folder that cannot become a data set as it is; the message says what to change."""


@dataclasses.dataclass(frozen=True)
class Scan:
  """What a folder holds: per split, `(relative path, class index)` of each candidate file."""
  root: pathlib.Path
  class_names: tuple[str, ...]
  files: dict            # split -> [(relative path, class index)]
  own_split: bool        # train/ and test/ subfolders
  fingerprint: str


def scan(root: str | pathlib.Path) -> Scan:
  """Lists the folder's classes and files (nothing decoded yet); FolderError if it is not a
  folder of class subfolders, or a class has no file."""
  root = pathlib.Path(root).expanduser().absolute()
  if not root.is_dir():
    raise FolderError(f"folder:{root} is not a folder; give a folder of class subfolders "
                      "(PATH/cat/*.png, PATH/dog/*.png).")
  own_split = (root / "train").is_dir() and (root / "test").is_dir()
  split_roots = {"train": root / "train", "test": root / "test"} if own_split else {"all": root}
  class_names = sorted(p.name for p in split_roots.get("train", root).iterdir()
                       if p.is_dir() and not p.name.startswith("."))
  if not class_names:
    raise FolderError(f"folder:{root} has no class subfolders; put each class's images in a "
                      "subfolder named after the class.")
  files, digest = {}, hashlib.sha256()
  for split, split_root in split_roots.items():
    files[split] = []
    for index, name in enumerate(class_names):
      folder = split_root / name
      entries = sorted(p for p in folder.rglob("*") if p.is_file() and
                       not p.name.startswith(".")) if folder.is_dir() else []
      if not entries:
        raise FolderError(f"folder:{root}: the class folder {folder} is empty or missing; every "
                          "class needs images (in train/ and test/ alike when both exist).")
      for path in entries:
        stat = path.stat()
        relative = str(path.relative_to(root))
        digest.update(f"{relative}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        files[split].append((relative, index))
  digest.update("\n".join(class_names).encode())
  return Scan(root, tuple(class_names), files, own_split, digest.hexdigest())


def _decode(path: pathlib.Path) -> np.ndarray | None:
  """The image as uint8 HxWxC (C 1 or 3), or None if it is not a readable image."""
  if path.suffix.lower() not in IMAGE_SUFFIXES:
    return None
  try:
    with Image.open(path) as image:
      image.load()  # decodes fully: a truncated file fails here, not later
      if image.mode in ("I", "I;16", "I;16B", "F"):  # 16-bit or float (X-rays): stretch to 8
        array = np.asarray(image, np.float32)
        low, high = float(array.min()), float(array.max())
        array = ((array - low) / max(high - low, 1e-12) * 255).round().astype(np.uint8)
      else:
        array = np.asarray(image.convert("L" if image.mode in ("1", "L") else "RGB"))
  except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
    return None
  return array[..., None] if array.ndim == 2 else array


def _header_shape(path: pathlib.Path) -> tuple[int, int, int] | None:
  """`(height, width, channels)` from the file's header alone (nothing decoded), or None."""
  if path.suffix.lower() not in IMAGE_SUFFIXES:
    return None
  try:
    with Image.open(path) as image:
      width, height = image.size
      return height, width, (1 if image.mode in ("1", "L", "I", "I;16", "I;16B", "F") else 3)
  except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
    return None


def stored_shape(found: Scan) -> tuple[int, int, int]:
  """The one shape every image is stored at: the most common height x width (headers only),
  its longer side at most MAX_SIDE, 3 channels if any image has colour."""
  shapes = [s for items in found.files.values() for relative, _ in items
            for s in [_header_shape(found.root / relative)] if s]
  if not shapes:
    raise FolderError(f"folder:{found.root} holds no PNG or JPEG image.")
  height, width = collections.Counter(s[:2] for s in shapes).most_common(1)[0][0]
  scale = min(1.0, MAX_SIDE / max(height, width))
  channels = 3 if any(s[2] == 3 for s in shapes) else 1
  return max(1, round(height * scale)), max(1, round(width * scale)), channels


def _fit(image: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
  height, width, channels = shape
  if image.shape[2] != channels:
    image = np.repeat(image, 3, axis=2) if channels == 3 else image.mean(2, keepdims=True)
  image = image.astype(np.uint8)
  if image.shape[:2] != (height, width):
    resized = Image.fromarray(image.squeeze(-1) if channels == 1 else image).resize(
        (width, height), Image.BILINEAR)
    image = np.asarray(resized).reshape(height, width, channels)
  return image


@dataclasses.dataclass
class FolderConfig(tfds.core.BuilderConfig):
  root: str = ""
  shape: tuple = ()
  class_names: tuple = ()


def config_for(root: str, data_dir: str) -> FolderConfig:
  """The builder config of a folder: named by the folder and its fingerprint (a changed folder
  gets its own prepared copy), with the stored shape read from a prepared copy's record or,
  before preparation, from the image headers."""
  found = scan(root)
  slug = re.sub(r"[^a-z0-9]+", "_", found.root.name.lower()).strip("_") or "images"
  name = f"{slug}_{found.fingerprint[:16]}"
  record = pathlib.Path(data_dir) / "image_folder" / name / "1.0.0" / SHAPE_RECORD
  shape = tuple(json.loads(record.read_text())["shape"]) if record.exists() else \
      stored_shape(found)
  return FolderConfig(name=name, root=str(found.root), shape=shape,
                      class_names=found.class_names)


def write_shape_record(builder) -> None:
  """Saves the stored shape beside the prepared copy (later uses skip the header scan)."""
  (pathlib.Path(builder.data_dir) / SHAPE_RECORD).write_text(
      json.dumps({"shape": list(builder.builder_config.shape)}))


class ImageFolder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """A folder of class subfolders (see the module docstring)."""

  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    config = self.builder_config
    return tfds.core.DatasetInfo(
        builder=self, description=f"Images from the folder {config.root}.",
        features=features.image_classification(*config.shape, list(config.class_names)),
        supervised_keys=("image", "label"))

  def _split_generators(self, dl_manager):
    del dl_manager  # everything is local
    config = self.builder_config
    found = scan(config.root)
    # Decoded once to find the unreadable files (then dropped: memory stays bounded), and again
    # when written.
    skipped = [relative for items in found.files.values() for relative, _ in items
               if _decode(found.root / relative) is None]
    unreadable = set(skipped)
    kept = {split: [(r, c) for r, c in items if r not in unreadable]
            for split, items in found.files.items()}
    if found.own_split:
      chosen = kept
    else:
      labels = np.array([c for _, c in kept["all"]])
      train, test = splits.stratified_split(labels, TEST_FRACTION, seed=0)
      chosen = {"train": [kept["all"][i] for i in train], "test": [kept["all"][i] for i in test]}
    for split, items in chosen.items():
      present = {c for _, c in items}
      empty = [found.class_names[c] for c in range(len(found.class_names)) if c not in present]
      if empty:
        raise FolderError(f"folder:{found.root}: no readable image of {', '.join(empty)} in "
                          f"its {split} split ({len(skipped)} unreadable file(s) skipped).")
    if skipped:
      shown = ", ".join(skipped[:5]) + (" ..." if len(skipped) > 5 else "")
      print(f"folder:{found.root}: skipped {len(skipped)} file(s) that are not readable "
            f"PNG/JPEG images: {shown}", flush=True)
    return {split: self._generate_examples(found.root, items, config.shape)
            for split, items in chosen.items()}

  def _generate_examples(self, root, items, shape):
    for key, (relative, label) in enumerate(items):
      yield key, {"image": _fit(_decode(root / relative), shape), "label": label}
