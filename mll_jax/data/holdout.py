"""A validation split carved from `train`, for choosing hyperparameters and budgets without
looking at `test`.

`config.data.validation = 0.1` holds out a class-balanced 10% of the training split (seeded by
`config.data.validation_seed`, not by `config.seed`, so every run of a study holds out the same
images). Training, and the labelled subsets of label-efficient runs, use the rest; evaluators
read the held-out part as the split named `holdout` (e.g. `config.evals.validation =
dict(kind="classification", split="holdout", ...)`).
"""

from mll_jax.data import label_fractions

HOLDOUT = "holdout"  # the split name evaluators use for the held-out part of train


def fraction(data_config) -> float:
  """The held-out fraction (0: none), checked."""
  value = float(data_config.get("validation", 0.0) or 0.0)
  if not 0.0 <= value < 1.0:
    raise ValueError(f"config.data.validation={value} must be in [0, 1): the fraction of the "
                     "training split held out for validation (0 for none).")
  return value


def carve(train_source, data_config, class_names=None):
  """`(training part, held-out part)` of a training source; `(source, None)` when
  `data_config.validation` is 0. A pure function of the labels and the validation seed."""
  held = fraction(data_config)
  if held == 0.0:
    return train_source, None
  labels = label_fractions.split_labels(train_source)
  holdout, rest = label_fractions.split_labelled(labels, held, data_config.get(
      "validation_seed", 0), class_names)
  return (label_fractions.Subset(train_source, rest),
          label_fractions.Subset(train_source, holdout))


def evaluate_on_holdout(config) -> None:
  """Points every evaluator of `config` that reads a scoring split (`split`, `test_split`) at
  the holdout, in place: a pre-training run of a study then never reads test, which is kept
  for the end of its adaptation runs. Needs `config.data.validation` > 0 at run time."""
  for evaluator in config.evals.values():
    for key in ("split", "test_split"):
      if key in evaluator:
        evaluator[key] = HOLDOUT
