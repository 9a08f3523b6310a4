"""Class-balanced labelled subsets: determinism, balance, errors."""

import numpy as np
import pytest

from mll_jax.data import label_fractions as lf

LABELS = np.repeat(np.arange(10), 100)


@pytest.mark.parametrize("spec,per_class", [("1%", 1), ("10%", 10), (0.05, 5), ("k=7", 7)])
def test_balanced_and_complementary(spec, per_class):
  labelled, unlabelled = lf.split_labelled(LABELS, spec, seed=0)
  assert np.bincount(LABELS[labelled]).tolist() == [per_class] * 10
  assert len(np.intersect1d(labelled, unlabelled)) == 0
  assert len(labelled) + len(unlabelled) == len(LABELS)


def test_same_seed_same_images_other_seed_other_images():
  a, _ = lf.split_labelled(LABELS, "10%", seed=3)
  b, _ = lf.split_labelled(LABELS, "10%", seed=3)
  c, _ = lf.split_labelled(LABELS, "10%", seed=4)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)


def test_all_labels():
  labelled, unlabelled = lf.split_labelled(LABELS, "100%", seed=0)
  assert len(labelled) == 1000 and len(unlabelled) == 0


def test_a_class_left_empty_is_named():
  labels = np.array([0] * 200 + [1] * 20)
  with pytest.raises(ValueError, match="class 'cat' with 0 labelled"):
    lf.split_labelled(labels, "1%", seed=0, class_names=["dog", "cat"])


@pytest.mark.parametrize("spec", ["0%", "150%", "k=0", -0.5])
def test_bad_specs(spec):
  with pytest.raises(ValueError):
    lf.parse(spec)


def test_subset_reads_through():
  source = [{"label": i} for i in range(10)]
  sub = lf.Subset(source, [2, 5])
  assert len(sub) == 2 and sub[1]["label"] == 5


class _BatchedSource:
  """A source that, like TFDS's array_record sources, also reads many records at once, and
  counts its reads."""

  def __init__(self, labels):
    self.labels, self.single_reads, self.batched_reads = labels, 0, 0

  def __len__(self):
    return len(self.labels)

  def __getitem__(self, i):
    self.single_reads += 1
    return {"label": self.labels[i]}

  def __getitems__(self, indices):
    self.batched_reads += 1
    return [{"label": self.labels[i]} for i in indices]


def test_split_labels_reads_in_batches_and_a_subset_through_its_parent(monkeypatch):
  monkeypatch.setattr(lf, "_READ_CHUNK", 7)
  labels = [(i * 7) % 10 for i in range(50)]
  source = _BatchedSource(labels)
  assert lf.split_labels(source).tolist() == labels
  assert source.single_reads == 0 and source.batched_reads == 8  # ceil(50 / 7)
  nested = lf.Subset(lf.Subset(source, [3, 4, 9, 20, 41]), [4, 0, 2])
  assert lf.split_labels(nested).tolist() == [labels[41], labels[3], labels[9]]
  assert lf.split_labels(lf.Flagged(source, [1])).tolist() == labels
  assert source.single_reads == 0
  assert lf.split_labels([{"label": 3}, {"label": 1}]).tolist() == [3, 1]  # no batched reads


def test_subsets_read_many_records_in_batches_from_their_source():
  from mll_jax.data import class_subsets
  labels = [(i * 3) % 5 for i in range(40)]
  source = _BatchedSource(labels)
  subset = lf.Subset(source, np.arange(0, 40, 2))
  assert [r["label"] for r in lf.read_many(subset, [3, 0, 7])] == [labels[6], labels[0],
                                                                  labels[14]]
  classes = class_subsets.ClassSubset(subset, (4, 1))  # classes 4 and 1, renumbered 0 and 1
  kept = [i for i in range(0, 40, 2) if labels[i] in (4, 1)]
  assert classes.all_labels().tolist() == [0 if labels[i] == 4 else 1 for i in kept]
  assert [r["label"] for r in lf.read_many(classes, range(len(classes)))] == \
      classes.all_labels().tolist()
  assert [classes[i]["label"] for i in range(3)] == classes.all_labels()[:3].tolist()
  flagged = lf.Flagged(classes, [1])
  assert [r["labelled"] for r in lf.read_many(flagged, [0, 1, 2])] == [False, True, False]
  assert source.single_reads == 3  # only the three `classes[i]` above read one at a time


def test_flagged_marks_exactly_the_labelled_examples():
  source = [{"label": i % 10} for i in range(100)]
  labelled, _ = lf.split_labelled(np.array([s["label"] for s in source]), "10%", seed=0)
  flagged = lf.Flagged(source, labelled)
  assert len(flagged) == 100
  assert sorted(i for i in range(100) if flagged[i]["labelled"]) == labelled.tolist()


def test_holdout_is_balanced_disjoint_and_fixed_whatever_the_run_seed():
  from mll_jax.data import holdout
  import ml_collections
  source = [{"label": i % 4} for i in range(200)]
  data = ml_collections.ConfigDict({"validation": 0.1, "validation_seed": 0})
  rest, held = holdout.carve(source, data)
  held_ids = {int(i) for i in held.indices}
  assert len(held) == 20 and len(rest) == 180 and not held_ids & {int(i) for i in rest.indices}
  assert np.bincount([source[i]["label"] for i in held.indices]).tolist() == [5] * 4
  assert holdout.carve(source, data)[1].indices.tolist() == held.indices.tolist()
  assert holdout.carve(source, ml_collections.ConfigDict({"validation": 0.0}))[1] is None
  with pytest.raises(ValueError, match=r"config.data.validation=1.5 must be in \[0, 1\)"):
    holdout.carve(source, ml_collections.ConfigDict({"validation": 1.5}))


def test_a_pre_training_config_is_pointed_at_the_holdout_everywhere_it_scores():
  import configs
  from mll_jax.data import holdout
  config = configs.get_config("mae", "mu")
  holdout.evaluate_on_holdout(config)
  assert config.evals.reconstruction.split == "holdout"
  assert config.evals.fewshot.test_split == "holdout"
  assert config.evals.fewshot.train_split == "train"  # its shots still come from train


@pytest.mark.parametrize("batch,labelled,expected", [(128, 70, 64), (128, 720, 128),
                                                     (64, 64, 64), (128, 1, 1)])
def test_batch_size_fits_a_small_labelled_subset(batch, labelled, expected):
  assert lf.batch_size_for(batch, labelled) == expected


def test_an_empty_subset_cannot_be_batched():
  with pytest.raises(ValueError, match="0 images"):
    lf.batch_size_for(128, 0)


def test_a_labels_seed_keeps_one_subset_across_run_seeds():
  import ml_collections
  from mll_jax.data import run_split
  source = [{"label": i % 10} for i in range(1000)]
  data = lambda **extra: ml_collections.ConfigDict(
      {"validation": 0.1, "validation_seed": 0, "labels": "1%", **extra})
  images = lambda config, seed: run_split.training_source(source, config, seed, None).indices
  own = images(data(), 1).tolist()
  assert images(data(labels_seed=1), 1001).tolist() == own  # an ensemble member of seed 1
  assert images(data(), 1001).tolist() != own  # without it, another subset
  assert images(data(labels_seed=-1), 1).tolist() == own  # -1: the run's seed
