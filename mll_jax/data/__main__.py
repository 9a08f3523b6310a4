"""`python -m mll_jax.data list` and `python -m mll_jax.data prepare NAME`.

`list` shows the offline data sets (and whether each is prepared in --data_dir); `prepare`
builds one offline data set now (they also prepare themselves on first use), or checks that a
TFDS data set is prepared and says how to prepare it if not.
"""

import sys

from absl import app, flags
from absl import logging as absl_logging

from mll_jax.data import sources

_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data folder (default: TFDS's own).")
_MANUAL_DIR = flags.DEFINE_string("manual_dir", None, "Folder of IDX files for idx/<name>.")
_REBUILD = flags.DEFINE_bool("rebuild", False, "prepare: discard the prepared copy and build it "
                             "again from --manual_dir (after its files changed).")

USAGE = ("usage: python -m mll_jax.data list | prepare NAME [--data_dir=DIR] [--manual_dir=DIR] "
         "[--rebuild]")


def _list() -> None:
  data_dir = _DATA_DIR.value or sources.default_data_dir()
  print(f"Offline data sets (data_dir: {data_dir}):")
  for name in sources.offline_names():
    builder = sources.get_builder(name, data_dir, prepare=False)
    state = "prepared" if builder.is_prepared() else "prepares on first use"
    if name.startswith("idx/") and not builder.is_prepared():
      state = "needs --manual_dir with its IDX files"
    print(f"  {name:22s} {state}")
  print("Any other TFDS name (cifar10, imagenet2012, ...) works once prepared in data_dir.")


def _prepare(name: str) -> None:
  builder = sources.get_builder(name, _DATA_DIR.value, _MANUAL_DIR.value,
                                rebuild=_REBUILD.value)
  info = sources.info(builder)
  sizes = ", ".join(f"{k}: {v}" for k, v in info.split_sizes.items())
  print(f"{info.name} is prepared in {builder.data_dir}: {info.num_classes} classes, "
        f"images {info.image_shape}, {sizes}.")


def main(argv):
  absl_logging.set_verbosity(absl_logging.ERROR)  # TFDS logs every info file it reads
  if len(argv) == 2 and argv[1] == "list":
    _list()
  elif len(argv) == 3 and argv[1] == "prepare":
    try:
      _prepare(argv[2])
    except (sources.DataError, FileNotFoundError, ValueError) as e:
      print(f"error: {e}", file=sys.stderr)
      sys.exit(2)
  else:
    print(USAGE, file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  app.run(main)
