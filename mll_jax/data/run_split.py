"""The training images a run sees, from its config: the split (restricted to the run's class
subset), minus the validation holdout, restricted to the labelled subset of a label-efficient
run (or all of it, each image flagged labelled or not, for distillation).

One function, so that anything that must see a run's exact images (the trainer, the reference
baselines of experiments/baselines.py) computes them the same way.
"""

import ml_collections

from mll_jax.data import holdout, label_fractions


def training_source(train_source, data: ml_collections.ConfigDict, seed: int, class_names):
  """`train_source` as a run with `config.data = data` and `config.seed = seed` trains on.

  The labelled subset is drawn with `data.labels_seed` where it is set (>= 0), else with
  `seed`: runs of several seeds then share one subset (e.g. an ensemble of teachers
  fine-tuned on the same labels, which must not see more labels between them)."""
  train_source, _ = holdout.carve(train_source, data, class_names)
  if not data.get("labels", ""):
    return train_source
  # Label-efficient runs: a class-balanced labelled subset, drawn with the run's seed.
  labels_seed = data.get("labels_seed", -1)
  labelled, _ = label_fractions.split_labelled(
      label_fractions.split_labels(train_source), data.labels,
      labels_seed if labels_seed >= 0 else seed, class_names)
  if data.get("unlabelled", False):  # all images, each flagged labelled or not
    return label_fractions.Flagged(train_source, labelled)
  return label_fractions.Subset(train_source, labelled)
