"""Experts for the model hub: supervised classifiers on a named subset of a data set's classes
(`config.classes = "cat,dog,horse"`, relabelled 0..k-1 by the trainer). Training is the
supervised task's; this module adds the requirement that the classes are named."""

import ml_collections

from mll_jax.tasks.supervised import eval_loss, features, logits, loss, make_model  # noqa: F401


def validate(config: ml_collections.ConfigDict) -> None:
  """An expert without named classes would be a generalist: refuse it."""
  if not config.get("classes", ""):
    raise ValueError("An expert needs its classes: --config.classes=cat,dog,horse (names of "
                     "the data set's classes).")
