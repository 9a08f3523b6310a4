"""Per-example image transforms on numpy uint8 arrays: augmentations named by
`config.data.augment` (MAE's crop + flip, shifts for small images), resize, channels.

Resampling uses Pillow (bicubic, as the MAE recipe's torchvision transforms do); the crop box
sampling follows torchvision's RandomResizedCrop so the recipe's `scale`/`ratio` mean the same.
"""

import math

import ml_collections
import numpy as np
from PIL import Image


def match_channels(image: np.ndarray, channels: int) -> np.ndarray:
  """`[H, W, C]` uint8 -> `[H, W, channels]`: grey is repeated to RGB, RGB averaged to grey."""
  have = image.shape[-1]
  if have == channels:
    return image
  if have == 1 and channels == 3:
    return np.repeat(image, 3, axis=-1)
  if have == 3 and channels == 1:
    return image.mean(axis=-1, keepdims=True).round().astype(np.uint8)
  raise ValueError(f"Cannot convert images with {have} channels to {channels}; "
                   "config.data.channels must be 1 or 3.")


def _resample(image: np.ndarray, size: int, box=None) -> np.ndarray:
  pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
  out = np.asarray(pil.resize((size, size), Image.Resampling.BICUBIC, box=box))
  return out[..., None] if out.ndim == 2 else out


def resize(image: np.ndarray, size: int) -> np.ndarray:
  """Resizes the whole image to `size x size` (no-op when it already has that size)."""
  if image.shape[0] == size and image.shape[1] == size:
    return image
  return _resample(image, size)


def crop_box(height: int, width: int, rng: np.random.Generator,
             scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3)) -> tuple[float, float, float, float]:
  """A random box `(left, top, right, bottom)` covering `scale` of the area at aspect `ratio`.

  Ten tries as torchvision does, then the largest centred box of an allowed aspect ratio.
  """
  area = height * width
  log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
  for _ in range(10):
    target_area = area * rng.uniform(*scale)
    aspect = math.exp(rng.uniform(*log_ratio))
    w = int(round(math.sqrt(target_area * aspect)))
    h = int(round(math.sqrt(target_area / aspect)))
    if 0 < w <= width and 0 < h <= height:
      top = int(rng.integers(0, height - h + 1))
      left = int(rng.integers(0, width - w + 1))
      return left, top, left + w, top + h
  in_ratio = width / height
  if in_ratio < min(ratio):
    w, h = width, int(round(width / min(ratio)))
  elif in_ratio > max(ratio):
    h, w = height, int(round(height * max(ratio)))
  else:
    w, h = width, height
  top, left = (height - h) // 2, (width - w) // 2
  return left, top, left + w, top + h


def random_resized_crop(image: np.ndarray, size: int, rng: np.random.Generator,
                        scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3)) -> np.ndarray:
  """MAE's RandomResizedCrop: a random box resampled to `size x size`."""
  return _resample(image, size, box=crop_box(image.shape[0], image.shape[1], rng, scale, ratio))


def random_flip(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """Horizontal flip with probability 1/2."""
  return image[:, ::-1] if rng.random() < 0.5 else image


def random_shift(image: np.ndarray, max_shift: int, rng: np.random.Generator) -> np.ndarray:
  """Translation by up to `max_shift` pixels each way, the border repeated into the gap (the
  small-image augmentation of digit and silhouette classifiers: no resampling blur)."""
  if max_shift <= 0:
    return image
  height, width = image.shape[:2]
  padded = np.pad(image, ((max_shift, max_shift), (max_shift, max_shift), (0, 0)), mode="edge")
  top, left = rng.integers(0, 2 * max_shift + 1, 2)
  return padded[top:top + height, left:left + width]


AUGMENTATIONS = {
    "crop": "random resized crop to config.data.crop_scale of the area (MAE's)",
    "flip": "horizontal flip (not for digits or characters)",
    "shift": "random translation by up to config.data.shift pixels",
}


def parse_augment(spec: str) -> tuple[str, ...]:
  """`"crop+flip"` -> `("crop", "flip")`; `"none"` or `""` -> `()`; an unknown name is an
  error listing the known ones."""
  ops = () if spec in ("", "none") else tuple(spec.split("+"))
  unknown = [op for op in ops if op not in AUGMENTATIONS]
  if unknown or len(set(ops)) != len(ops):
    what = f"unknown augmentation {unknown[0]!r}" if unknown else "a repeated augmentation"
    raise ValueError(f"config.data.augment={spec!r} has {what}. Use 'none' or names joined by "
                     "'+' from: " + "; ".join(f"{k} ({v})" for k, v in AUGMENTATIONS.items())
                     + ".")
  return ops


class TrainTransform:
  """Training augmentation (random resized crop + flip) of one `{"image", "label"}` example.

  `views=2` adds a second, independently augmented view as `image_view2` (contrastive tasks).
  """

  def __init__(self, size: int, channels: int, augment: str = "crop+flip", scale=(0.2, 1.0),
               shift: int = 2, views: int = 1):
    if views not in (1, 2):
      raise ValueError(f"config.data.views must be 1 or 2, got {views}.")
    self.ops = parse_augment(augment)
    self.size, self.channels, self.scale, self.shift = size, channels, tuple(scale), int(shift)
    self.views = views

  def _view(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if "crop" in self.ops:
      image = random_resized_crop(image, self.size, rng, scale=self.scale)
    else:
      image = resize(image, self.size)
    if "shift" in self.ops:
      image = random_shift(image, self.shift, rng)
    if "flip" in self.ops:
      image = random_flip(image, rng)
    return np.ascontiguousarray(image)

  def __call__(self, example: dict, rng: np.random.Generator) -> dict:
    image = match_channels(np.asarray(example["image"]), self.channels)
    out = {"image": self._view(image, rng), "label": np.int32(example["label"])}
    if "labelled" in example:
      out["labelled"] = np.bool_(example["labelled"])
    if self.views == 2:
      out["image_view2"] = self._view(image, rng)
    return out


def train_transform(data: ml_collections.ConfigDict) -> TrainTransform:
  """The training transform that `config.data` describes (`augment`, `crop_scale`, `shift`,
  `views`)."""
  return TrainTransform(data.image_size, data.channels, augment=data.get("augment", "crop+flip"),
                        scale=data.get("crop_scale", (0.2, 1.0)), shift=data.get("shift", 2),
                        views=data.get("views", 1))


class EvalTransform:
  """Deterministic evaluation view: channels matched and resized to `size`."""

  def __init__(self, size: int, channels: int):
    self.size, self.channels = size, channels

  def __call__(self, example: dict) -> dict:
    image = resize(match_channels(np.asarray(example["image"]), self.channels), self.size)
    return {"image": image, "label": np.int32(example["label"])}
