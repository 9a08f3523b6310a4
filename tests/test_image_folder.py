"""Your own images (`config.data.name="folder:PATH"`): a generated folder of PNG and JPEG files
of mixed sizes and channels trains end to end, with class names from the folder names; bad
files are skipped and counted; an empty class is refused; a changed folder is prepared anew."""

import pathlib

import numpy as np
import pytest
from PIL import Image

from mll_jax import train
from mll_jax.data import sources
from mll_jax.data.builders import image_folder
from conftest import SMALL_RUN, load_config


def _write_folder(root, per_class=10, classes=("cat", "dog", "horse"), seed=0):
  rng = np.random.default_rng(seed)
  for c, name in enumerate(classes):
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(per_class):
      size = (32, 32) if i % 3 else (40, 24)         # mixed sizes
      grey = rng.integers(0, 80, size, dtype=np.uint8) + 60 * c
      if i % 2:                                      # PNG grey, JPEG colour
        Image.fromarray(grey).save(folder / f"{i:03d}.png")
      else:
        Image.fromarray(np.stack([grey] * 3, -1)).save(folder / f"{i:03d}.jpg")
  return root


@pytest.mark.slow
def test_a_folder_trains_end_to_end_with_its_class_names(tmp_path, data_dir, capsys):
  root = _write_folder(tmp_path / "images")
  (root / "cat" / "notes.txt").write_text("not an image")
  png = (root / "dog" / "001.png").read_bytes()
  (root / "dog" / "broken.png").write_bytes(png[: len(png) // 2])  # truncated
  builder = sources.get_builder(f"folder:{root}", data_dir=data_dir)
  info = sources.info(builder)
  assert info.class_names == ("cat", "dog", "horse")
  assert info.image_shape == (32, 32, 3)             # most common size; colour present
  assert info.split_sizes == {"train": 24, "test": 6}  # 80/20 per class, bad files skipped
  assert "skipped 2 file(s)" in capsys.readouterr().out
  # All 24 training labels: the default 10% would leave 3, fewer than one batch.
  config = load_config("finetune", "mu,labels=100%", data_dir, {
      **SMALL_RUN, "data.name": f"folder:{root}", "total_steps": 3, "warmup_steps": 1,
      "evals.classification.num_examples": 0})
  train.run(config, tmp_path / "run")
  assert (tmp_path / "run" / "checkpoints" / "3").is_dir()


def test_its_own_train_and_test_split_is_kept(tmp_path, data_dir):
  root = tmp_path / "split"
  _write_folder(root / "train", per_class=6)
  _write_folder(root / "test", per_class=2, seed=1)
  info = sources.info(sources.get_builder(f"folder:{root}", data_dir=data_dir))
  assert info.split_sizes == {"train": 18, "test": 6}


def test_a_changed_folder_is_prepared_anew(tmp_path, data_dir):
  root = _write_folder(tmp_path / "images", per_class=5)
  first = sources.get_builder(f"folder:{root}", data_dir=data_dir)
  assert sources.info(first).split_sizes["train"] == 12
  Image.fromarray(np.zeros((32, 32), np.uint8)).save(root / "cat" / "new.png")
  second = sources.get_builder(f"folder:{root}", data_dir=data_dir)
  assert second.data_dir != first.data_dir
  assert sum(sources.info(second).split_sizes.values()) == 16


@pytest.mark.parametrize("make,message", [
    (lambda root: (root / "cat").mkdir(parents=True), "the class folder .*cat is empty"),
    (lambda root: root.mkdir(), "has no class subfolders"),
    (lambda root: root.parent.mkdir(exist_ok=True) or root.write_text("x"), "is not a folder"),
])
def test_bad_folders_get_one_clear_message(tmp_path, data_dir, make, message):
  root = tmp_path / "bad"
  if "empty" in message:
    _write_folder(root, classes=("dog",))
  make(root)
  with pytest.raises(sources.DataError, match=message):
    sources.get_builder(f"folder:{root}", data_dir=data_dir)
  assert not list(pathlib.Path(data_dir).glob("image_folder/bad_*"))  # nothing prepared


def test_sixteen_bit_greys_are_stretched_not_clipped(tmp_path):
  path = tmp_path / "xray.png"
  Image.fromarray(np.array([[0, 1000], [30000, 65535]], np.uint16)).save(path)
  image = image_folder._decode(path)
  assert image.shape == (2, 2, 1) and image.min() == 0 and image.max() == 255
  assert 0 < image[0, 1, 0] < image[1, 0, 0] < 255
