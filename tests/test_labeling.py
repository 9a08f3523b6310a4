"""Model labelling: deterministic class-balanced pools, the sharded response tensor, F1 views."""

import jax
import numpy as np
import pytest

from mll_jax.hub import functional, labeling, sdag

ARCH = {"task": "supervised", "model": {"variant": "mu", "patch_size": 4, "pool": "gap"},
        "image_size": 28, "channels": 1, "num_classes": 3}


@pytest.fixture(scope="module")
def graph():
  edges = [("animal", "mammal"), ("mammal", "dog"), ("mammal", "cat"), ("animal", "bird"),
           ("number", "seven")]
  return sdag.SDAG([sdag.Node(n, n) for n in sorted({x for e in edges for x in e})], edges)


def _source(counts: dict, seed: int):
  """Images whose every pixel is the label (so pool membership is checkable)."""
  rng = np.random.default_rng(seed)
  labels = rng.permutation(np.concatenate([np.full(n, c) for c, n in counts.items()]))
  images = np.broadcast_to(labels[:, None, None, None], (len(labels), 28, 28, 1)).astype(np.uint8)
  return images, labels


def _pools(graph, seed=0, cap=6):
  a_images, a_labels = _source({0: 10, 1: 3, 2: 8, 3: 9}, 0)
  b_images, b_labels = _source({0: 10}, 1)
  return labeling.build_pools([
      (a_images, a_labels, {0: "dog", 1: "cat", 2: "bird", 3: ""}),  # class 3: no node
      (b_images + 100, b_labels, {0: "seven"})], graph, cap=cap, seed=seed)


def test_pools_are_capped_balanced_and_deterministic(graph):
  pools = _pools(graph)
  assert pools.node_ids == ("bird", "cat", "dog", "seven", "animal", "mammal", "number")
  sizes = {n: len(pools.pool(n)) for n in pools.node_ids}
  assert sizes == {"bird": 6, "cat": 3, "dog": 6, "seven": 6, "animal": 6, "mammal": 6,
                   "number": 6}
  label_of = {"dog": 0, "cat": 1, "bird": 2, "seven": 100}
  for leaf, value in label_of.items():
    assert np.all(pools.images[pools.pool(leaf)] == value)
  # An inner node samples its descendants evenly: mammal = 3 cats + 3 dogs; animal 2+2+2.
  mammal = pools.images[pools.pool("mammal")][:, 0, 0, 0]
  assert sorted(np.bincount(mammal, minlength=2)[:2]) == [3, 3]
  animal = pools.images[pools.pool("animal")][:, 0, 0, 0]
  assert np.bincount(animal, minlength=3)[:3].tolist() == [2, 2, 2]
  assert _pools(graph).fingerprint == pools.fingerprint
  assert _pools(graph, seed=1).fingerprint != pools.fingerprint


def test_pools_round_trip_without_pickle(graph, tmp_path):
  pools = _pools(graph)
  labeling.save_pools(pools, tmp_path / "pools.npz")
  loaded = labeling.load_pools(tmp_path / "pools.npz")
  assert loaded.fingerprint == pools.fingerprint and loaded.node_ids == pools.node_ids
  assert [p.name for p in tmp_path.iterdir()] == ["pools.npz"]


def test_pools_need_nodes_in_the_graph(graph):
  images, labels = _source({0: 4}, 0)
  with pytest.raises(ValueError, match="'wolf' .* not in the SDAG"):
    labeling.build_pools([(images, labels, {0: "wolf"})], graph)
  with pytest.raises(ValueError, match="No class of the pool sources maps"):
    labeling.build_pools([(images, labels, {0: ""})], graph)


def test_sharded_label_matches_a_direct_forward_pass(graph):
  pools = _pools(graph)
  variables = functional.init_variables(ARCH, seed=2)
  apply = functional.apply_fn(ARCH)
  label = labeling.label_model(apply, variables, pools, batch_size=16)  # 8 devices, padded
  assert jax.device_count() == 8 and label["responses"].shape == (len(pools.images), 3)
  expected = jax.nn.log_softmax(apply(variables, pools.images), axis=-1)
  np.testing.assert_allclose(label["responses"], expected, atol=1e-5)
  assert str(label["pools_fingerprint"]) == pools.fingerprint


def test_head_scores_precision_recall_f1():
  pools = labeling.Pools(np.zeros((6, 1, 1, 1), np.uint8), np.zeros(6, np.int32), ("a", "b"),
                         (np.array([0, 1, 2]), np.array([3, 4, 5])))
  # argmax per image: head 0, 0, 1 on node a; head 1, 1, 1 on node b.
  responses = np.log(np.array([[.9, .1], [.8, .2], [.3, .7], [.1, .9], [.4, .6], [.2, .8]]))
  views = labeling.head_scores(responses, pools)
  np.testing.assert_allclose(views["recall"], [[2 / 3, 1 / 3], [0, 1]])
  np.testing.assert_allclose(views["precision"], [[1, 1 / 4], [0, 3 / 4]])
  np.testing.assert_allclose(views["f1"][0, 0], 2 * (2 / 3) / (1 + 2 / 3))
  np.testing.assert_allclose(views["f1"][1, 1], 2 * 0.75 / 1.75)
  np.testing.assert_allclose(views["mean_response"][1], responses[3:].mean(0))
