"""Experts: a classifier on a named class subset trains, evaluates on those classes only,
resumes exactly, and refuses unknown or missing classes before writing anything."""


import numpy as np
import pytest

from mll_jax import train
from mll_jax.data import class_subsets, sources
from test_train import _metrics, _read_params


def test_class_subset_relabels_in_the_given_order():
  source = [{"label": l, "id": i} for i, l in enumerate([0, 2, 1, 2, 3, 0])]
  subset = class_subsets.ClassSubset(source, (2, 0))
  assert len(subset) == 4
  assert [(r["id"], r["label"]) for r in (subset[i] for i in range(4))] == \
      [(0, 1), (1, 0), (3, 0), (5, 1)]
  assert class_subsets.resolve("cat, dog", ("dog", "cat", "cow")) == (1, 0)
  assert class_subsets.resolve("", ("dog", "cat")) == ()
  with pytest.raises(ValueError, match=r"unknown classes \['lion'\]; the data set has: dog, cat"):
    class_subsets.resolve("cat,lion", ("dog", "cat"))
  with pytest.raises(ValueError, match="at least two distinct"):
    class_subsets.resolve("cat,cat", ("dog", "cat"))


@pytest.mark.slow
def test_expert_trains_on_its_classes(make_expert_config, data_dir, tmp_path):
  workdir = tmp_path / "expert"
  config = make_expert_config()
  train.run(config, workdir)
  params = _read_params(workdir, 6)
  assert params["head/kernel"].shape[-1] == 3
  evals = [m for m in _metrics(workdir) if "classification/accuracy" in m]
  # The test split's cats, dogs and horses only: 3 of animal_mnist's 10 classes.
  test_size = sources.info(sources.get_builder("animal_mnist", data_dir)).split_sizes["test"]
  assert evals[-1]["classification/examples"] == test_size * 3 // 10


@pytest.mark.parametrize("classes, message", [
    ("", "An expert needs its classes"),
    ("cat,lion", r"unknown classes \['lion'\]"),
])
def test_bad_expert_classes_are_refused_before_any_write(make_expert_config, tmp_path, classes,
                                                         message):
  with pytest.raises(ValueError, match=message):
    train.run(make_expert_config(classes=classes), tmp_path / "run")
  assert not (tmp_path / "run").exists()
