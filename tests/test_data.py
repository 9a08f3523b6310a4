"""Offline builders, the no-download guarantee, transforms, and the grain pipeline."""

import pickle

import numpy as np
import pytest
import tensorflow_datasets as tfds

from mll_jax.data import pipeline, sources, transforms
from mll_jax.data.builders import animal_mnist, idx


def test_animal_mnist_is_read_without_unpickling(monkeypatch):
  def refuse(*args, **kwargs):
    raise AssertionError("pickle must not be used")
  monkeypatch.setattr(pickle, "load", refuse)
  monkeypatch.setattr(pickle, "loads", refuse)
  images, labels = animal_mnist.load_arrays()
  assert images.shape == (10000, 28, 28, 1) and images.dtype == np.uint8
  np.testing.assert_array_equal(np.bincount(labels), [1000] * 10)
  assert 30 < images.mean() < 120  # real silhouettes, not zeros


def test_prepared_animal_mnist_has_a_stratified_split(data_dir):
  builder = sources.get_builder("animal_mnist", data_dir=data_dir)
  info = sources.info(builder)
  assert info.split_sizes == {"train": 8000, "test": 2000}
  assert info.class_names[0] == "bear" and info.num_classes == 10
  test = sources.data_source(builder, "test")
  labels = np.array([test[i]["label"] for i in range(len(test))])
  np.testing.assert_array_equal(np.bincount(labels), [200] * 10)


def test_digits_builder(data_dir):
  info = sources.info(sources.get_builder("digits", data_dir=data_dir))
  assert info.image_shape == (8, 8, 1)
  assert sum(info.split_sizes.values()) == 1797


def test_idx_round_trip_and_truncation(tmp_path):
  array = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
  idx.write_idx(tmp_path / "a-idx3-ubyte.gz", array)
  np.testing.assert_array_equal(idx.read_idx(tmp_path / "a-idx3-ubyte.gz"), array)
  idx.write_idx(tmp_path / "b-idx3-ubyte", array)
  data = (tmp_path / "b-idx3-ubyte").read_bytes()
  (tmp_path / "b-idx3-ubyte").write_bytes(data[:-10])
  with pytest.raises(ValueError, match="truncated"):
    idx.read_idx(tmp_path / "b-idx3-ubyte")


def _write_mnist_like(folder, n_train=60, n_test=20):
  rng = np.random.default_rng(0)
  for prefix, n in (("train", n_train), ("t10k", n_test)):
    idx.write_idx(folder / f"{prefix}-images-idx3-ubyte.gz",
                  rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
    idx.write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
  (folder / "._train-images-idx3-ubyte.gz").write_bytes(b"macOS resource fork")


def test_idx_builder_reads_a_folder_of_idx_files(tmp_path):
  manual = tmp_path / "manual"
  manual.mkdir()
  _write_mnist_like(manual)
  builder = sources.get_builder("idx/mnist", data_dir=str(tmp_path / "data"),
                                manual_dir=str(manual))
  info = sources.info(builder)
  assert info.split_sizes == {"train": 60, "test": 20}
  assert sources.data_source(builder, "train")[0]["image"].shape == (28, 28, 1)


def test_a_changed_idx_folder_is_never_served_from_the_stale_cache(tmp_path):
  data_dir = str(tmp_path / "data")
  first, second = tmp_path / "first", tmp_path / "second"
  first.mkdir()
  second.mkdir()
  _write_mnist_like(first, n_train=60)
  _write_mnist_like(second, n_train=90)
  sources.get_builder("idx/mnist", data_dir=data_dir, manual_dir=str(first))
  copy = tmp_path / "copy_of_first"  # the same files elsewhere are the same source
  copy.mkdir()
  for path in first.iterdir():
    (copy / path.name).write_bytes(path.read_bytes())
  assert sources.info(sources.get_builder("idx/mnist", data_dir=data_dir,
                                          manual_dir=str(copy))).split_sizes["train"] == 60
  with pytest.raises(sources.DataError, match=rf"prepared from {first}.*but "
                                              rf"--manual_dir={second} holds other files.*"
                                              r"--rebuild"):
    sources.get_builder("idx/mnist", data_dir=data_dir, manual_dir=str(second))
  rebuilt = sources.get_builder("idx/mnist", data_dir=data_dir, manual_dir=str(second),
                                rebuild=True)
  assert sources.info(rebuilt).split_sizes["train"] == 90
  with pytest.raises(sources.DataError, match=rf"prepared from {second}"):
    sources.get_builder("idx/mnist", data_dir=data_dir, manual_dir=str(first))


def test_unknown_data_set_names_the_offline_ones(tmp_path):
  with pytest.raises(sources.DataError, match="Unknown data set 'no_such_set'.*animal_mnist"):
    sources.get_builder("no_such_set", data_dir=str(tmp_path))


def test_unprepared_tfds_set_says_how_to_prepare_and_never_downloads(tmp_path, monkeypatch):
  def no_download(*args, **kwargs):
    raise AssertionError("a download was attempted")
  monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", no_download)
  with pytest.raises(sources.DataError, match="'cifar10' is not prepared.*tfds build cifar10"):
    sources.get_builder("cifar10", data_dir=str(tmp_path))


def test_unknown_split_is_named(data_dir):
  builder = sources.get_builder("digits", data_dir=data_dir)
  with pytest.raises(sources.DataError, match="has no split 'validation'"):
    sources.data_source(builder, "validation")


def test_channel_handling():
  grey = np.full((28, 28, 1), 7, np.uint8)
  assert transforms.match_channels(grey, 3).shape == (28, 28, 3)
  rgb = np.stack([np.full((4, 4), v, np.uint8) for v in (0, 30, 60)], -1)
  assert transforms.match_channels(rgb, 1)[0, 0, 0] == 30
  with pytest.raises(ValueError, match="must be 1 or 3"):
    transforms.match_channels(grey, 2)


@pytest.mark.parametrize("shape,size", [((28, 28, 1), 28), ((300, 200, 3), 224)])
def test_random_resized_crop_output_size(shape, size):
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, shape, dtype=np.uint8)
  out = transforms.TrainTransform(size, shape[-1])({"image": image, "label": 1}, rng)
  assert out["image"].shape == (size, size, shape[-1]) and out["image"].dtype == np.uint8


def test_named_augmentations_do_what_they_say():
  rng = np.random.default_rng(0)
  image = np.zeros((28, 28, 1), np.uint8)
  image[10:14, 3:7] = 255  # a block left of centre
  run = lambda augment, **kw: [transforms.TrainTransform(28, 1, augment=augment, **kw)(
      {"image": image, "label": 0}, rng)["image"] for _ in range(40)]
  assert all(np.array_equal(out, image) for out in run("none"))
  shifted = run("shift", shift=2)
  # Shifts move the block by at most 2 pixels and never mirror it to the right half.
  assert any(not np.array_equal(out, image) for out in shifted)
  for out in shifted:
    rows, cols = np.nonzero(out[..., 0] == 255)
    assert 8 <= rows.min() <= 12 and 1 <= cols.min() <= 5 and cols.max() < 14
  assert any(np.nonzero(out[..., 0] == 255)[1].min() > 14 for out in run("flip"))
  assert all(out.shape == (28, 28, 1) for out in run("crop+shift+flip"))


@pytest.mark.parametrize("augment,message", [
    ("rotate", "unknown augmentation 'rotate'"), ("crop+crop", "a repeated augmentation"),
    ("crop+", "unknown augmentation ''")])
def test_unknown_augmentation_names_the_known_ones(augment, message):
  with pytest.raises(ValueError, match=message + ".*crop .*flip .*shift"):
    transforms.TrainTransform(28, 1, augment=augment)


def test_crop_box_respects_scale():
  rng = np.random.default_rng(0)
  for _ in range(200):
    left, top, right, bottom = transforms.crop_box(100, 100, rng, scale=(0.2, 1.0))
    area = (right - left) * (bottom - top)
    assert 0 <= left < right <= 100 and 0 <= top < bottom <= 100
    assert 0.15 * 10000 <= area <= 10000


def test_eval_transform_resizes_and_converts():
  out = transforms.EvalTransform(32, 3)({"image": np.zeros((28, 28, 1), np.uint8), "label": 3})
  assert out["image"].shape == (32, 32, 3)


def _stream(data_dir, **kwargs):
  source = sources.data_source(sources.get_builder("digits", data_dir=data_dir), "train")
  ds = pipeline.train_dataset(source, local_batch_size=16, seed=3,
                              transform=transforms.TrainTransform(8, 1), **kwargs)
  return pipeline.train_iterator(ds)


def test_pipeline_is_deterministic_and_resumes_from_its_state(data_dir):
  first = _stream(data_dir)
  batches = [next(first)["image"] for _ in range(5)]
  again = _stream(data_dir)
  np.testing.assert_array_equal(next(again)["image"], batches[0])
  resumed = _stream(data_dir)
  for _ in range(2):
    next(resumed)
  state = resumed.get_state()
  fresh = _stream(data_dir)
  fresh.set_state(state)
  for expected in batches[2:]:
    np.testing.assert_array_equal(next(fresh)["image"], expected)


def test_pipeline_runs_past_an_epoch_with_a_new_order(data_dir):
  it = _stream(data_dir)
  steps_per_epoch = 1438 // 16
  labels = [next(it)["label"] for _ in range(2 * steps_per_epoch + 1)]
  first, second = np.concatenate(labels[:10]), np.concatenate(labels[steps_per_epoch:steps_per_epoch + 10])
  assert not np.array_equal(first, second)


def test_processes_split_the_same_global_batches_as_one_process(data_dir):
  source = sources.data_source(sources.get_builder("digits", data_dir=data_dir), "train")
  # A random transform: each process must draw its rows' randomness as one process would.
  transform = lambda ex, rng: {**ex, "noise": rng.random()}

  def batches(process, count, local):
    ds = pipeline.train_dataset(source, local_batch_size=local, seed=0, process_index=process,
                                process_count=count, transform=transform)
    it = iter(ds.to_iter_dataset())
    return [next(it) for _ in range(3)]

  alone = batches(0, 1, 16)
  shares = [batches(p, 2, 8) for p in range(2)]
  for step in range(3):
    for key in ("image", "label", "noise"):
      np.testing.assert_array_equal(
          np.concatenate([shares[0][step][key], shares[1][step][key]]), alone[step][key])


def test_too_small_split_for_a_batch_is_a_clear_error(data_dir):
  source = sources.data_source(sources.get_builder("digits", data_dir=data_dir), "test")
  with pytest.raises(ValueError, match="fewer than one global batch"):
    pipeline.train_dataset(source, local_batch_size=4096, seed=0, transform=lambda e, r: e)
