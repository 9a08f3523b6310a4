"""Range checks of every numeric setting, run where a config is resolved and before anything is
written: one message naming the key, its value and the allowed range.

Without them a negative learning rate trains by gradient ascent, a label smoothing of 2 trains
on negative targets, a batch of 0 ends in a ZeroDivisionError, and a drop-path rate of 1 drops
every block and surfaces as "NaN/Inf ... lower the learning rate". `RANGES` is the table that
docs/training.md prints.
"""

import dataclasses
import math


class ConfigRangeError(ValueError):
  """A config value outside its allowed range; the message names key, value and range."""


@dataclasses.dataclass(frozen=True)
class Range:
  """`low <= value <= high`, with open ends where `low_open` / `high_open`; `integer` too."""
  low: float = -math.inf
  high: float = math.inf
  low_open: bool = False
  high_open: bool = False
  integer: bool = False

  def holds(self, value) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
      return False
    if self.integer and int(value) != value:
      return False
    if math.isnan(value):
      return False
    above = value > self.low if self.low_open else value >= self.low
    below = value < self.high if self.high_open else value <= self.high
    return above and below

  def text(self) -> str:
    kind = "an integer" if self.integer else "a number"
    if self.high == math.inf:
      return f"{kind} {'>' if self.low_open else '>='} {self.low:g}"
    left = "(" if self.low_open else "["
    right = ")" if self.high_open else "]"
    return f"{kind} in {left}{self.low:g}, {self.high:g}{right}"


POSITIVE = Range(0, low_open=True)
NON_NEGATIVE = Range(0)
FRACTION = Range(0, 1)
BELOW_ONE = Range(0, 1, high_open=True)

# Dotted key -> allowed range. Keys a config lacks are skipped (each task has its own).
RANGES = {
    "batch_size": Range(1, integer=True),
    "total_steps": Range(0, integer=True),
    "num_epochs": NON_NEGATIVE,
    "min_steps": Range(0, integer=True),
    "warmup_steps": Range(0, integer=True),
    "warmup_epochs": NON_NEGATIVE,
    "log_steps": Range(1, integer=True),
    "label_smoothing": BELOW_ONE,
    "mixup": NON_NEGATIVE,
    "temperature": POSITIVE,
    "distill_temperature": POSITIVE,
    "labelled_weight": FRACTION,
    "optim.base_lr": NON_NEGATIVE,  # 0 trains nothing (tests load weights that way)
    "optim.base_batch_size": Range(1, integer=True),
    "optim.weight_decay": NON_NEGATIVE,
    "optim.b1": BELOW_ONE,
    "optim.b2": BELOW_ONE,
    "optim.momentum": BELOW_ONE,
    "optim.grad_clip_norm": NON_NEGATIVE,
    "optim.min_lr_ratio": FRACTION,
    "optim.layer_decay": Range(0, 1, low_open=True),
    "model.drop_path": BELOW_ONE,
    "model.mask_ratio": BELOW_ONE,
    "data.validation": BELOW_ONE,
    "data.shift": Range(0, integer=True),
    "data.worker_threads": Range(0, integer=True),
    "checkpoint.every_steps": Range(1, integer=True),
    "checkpoint.keep": Range(1, integer=True),
    "checkpoint.keep_every": Range(0, integer=True),
}


def _lookup(config, dotted: str):
  node = config
  for part in dotted.split("."):
    if not hasattr(node, "get") or part not in node:
      return None, False
    node = node[part]
  return node, True


def check(config) -> None:
  """Raises ConfigRangeError for the first value outside its range, and for a warm-up that
  does not end before the run does."""
  for key, allowed in RANGES.items():
    value, present = _lookup(config, key)
    if present and value is not None and not allowed.holds(value):
      raise ConfigRangeError(f"config.{key}={value!r} is out of range: it must be "
                             f"{allowed.text()}.")
  _check_warmup(config)


def _check_warmup(config) -> None:
  """A warm-up as long as the run never reaches the peak learning rate. Checked where both
  lengths are given in the same unit; a warm-up in epochs under a run in steps is clipped."""
  total, warmup = config.get("total_steps", 0), config.get("warmup_steps", 0)
  if total and warmup and warmup >= total:
    raise ConfigRangeError(f"config.warmup_steps={warmup} is not shorter than "
                           f"config.total_steps={total}: the peak learning rate would never be "
                           "reached. Use fewer warm-up steps.")
  epochs, warmup_epochs = config.get("num_epochs", 0), config.get("warmup_epochs", 0)
  if not total and not warmup and warmup_epochs and epochs and warmup_epochs >= epochs:
    raise ConfigRangeError(f"config.warmup_epochs={warmup_epochs} is not shorter than "
                           f"config.num_epochs={epochs}: the peak learning rate would never "
                           "be reached. Use fewer warm-up epochs.")
