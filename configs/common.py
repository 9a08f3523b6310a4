"""What every config file shares (big_vision's `configs/common.py` pattern): the data sets their
args name, how an arg string is split and checked, and a run's mesh and checkpoint defaults."""

DATA = {  # arg -> (TFDS / offline name, image size, channels)
    "animal_mnist": ("animal_mnist", 28, 1),
    "digits": ("digits", 8, 1),
    "mnist": ("idx/mnist", 28, 1),
    "cifar10": ("cifar10", 32, 3),
    "cifar100": ("cifar100", 32, 3),
    "imagenet2012": ("imagenet2012", 224, 3),
}


def tokens(arg) -> list[str]:
  """The comma-separated tokens of a config arg (`"mini,animal_mnist,labels=10%"`)."""
  return [token for token in (arg or "").split(",") if token]


def unknown_arg(config_file: str, token: str, vocabulary: str) -> ValueError:
  """The error for an arg token a config file does not know, listing what it knows."""
  return ValueError(f"configs/{config_file}: unknown arg {token!r}; {vocabulary}.")


def data_config(data: str, augment: str, crop_scale: tuple) -> dict:
  """`config.data` for a DATA key: no validation holdout, the data set's own size and colour."""
  name, image_size, channels = DATA[data]
  return dict(name=name, data_dir="", manual_dir="", train_split="train",
              image_size=image_size, channels=channels, augment=augment,
              crop_scale=crop_scale, shift=2, validation=0.0, validation_seed=0,
              worker_threads=2)


def distribute(c, big: bool) -> None:
  """Data parallel over every device (tuples: overridable from the command line), parameters
  FSDP-sharded where the mesh has an `fsdp` axis, checkpoints every 100 steps (1000 on
  ImageNet), the newest 3 kept."""
  c.mesh = (("data", -1), ("fsdp", 1))
  c.sharding_rules = ((".*", "fsdp"),)
  c.checkpoint = dict(every_steps=1000 if big else 100, keep=3, keep_every=0)
