"""Selection (coverage, candidates, CHCO / top-k) from stored labels, and reuse in one compiled
graph: one expert reproduces its own predictions; stacked models combine as the weights say."""

import jax
import numpy as np
import pytest

from mll_jax.hub import functional, labeling, registry, reuse, sdag, selection

ARCH = {"task": "expert", "model": {"variant": "mu", "patch_size": 4, "pool": "gap"},
        "image_size": 28, "channels": 1, "num_classes": 2}
CLS_ARCH = dict(ARCH, model=dict(ARCH["model"], pool="cls"))


@pytest.fixture(scope="module")
def graph():
  edges = [("animal", "dog"), ("animal", "cat"), ("animal", "bird"), ("number", "seven")]
  return sdag.SDAG([sdag.Node(n, n) for n in sorted({x for e in edges for x in e})], edges)


@pytest.fixture(scope="module")
def pools(graph):
  labels = np.repeat(np.arange(4), 10)
  images = np.broadcast_to((labels * 60)[:, None, None, None], (40, 28, 28, 1)).astype(np.uint8)
  return labeling.build_pools([(images, labels, {0: "dog", 1: "cat", 2: "bird", 3: "seven"})],
                              graph, cap=10)


def _responses(pools, detects: dict, noise=0.1, seed=0):
  """Log-probabilities of a 2-class model whose head c fires on the images of `detects[c]`."""
  rng = np.random.default_rng(seed)
  logits = rng.normal(0, noise, (len(pools.images), 2))
  for c, node in detects.items():
    logits[pools.pool(node), c] += 4.0
  return np.asarray(jax.nn.log_softmax(logits), np.float32)


def _models(pools):
  return {"pets@1": {"responses": _responses(pools, {0: "dog", 1: "cat"}), "flops": 1e6,
                     "classes": ("dog", "cat")},
          "others@1": {"responses": _responses(pools, {0: "bird", 1: "seven"}, seed=1),
                       "flops": 1e6, "classes": ("bird", "seven")},
          "noise@1": {"responses": _responses(pools, {}, noise=1.0, seed=2), "flops": 4e6,
                      "classes": ("a", "b")}}


def test_coverage_report_names_uncovered_and_weak_classes(graph, pools):
  task = selection.task_problem(["dog", "Cat", "unicorn", "animal"], graph, pools,
                                _models(pools))
  status = {c.name: (c.status, c.reason, c.best_head) for c in task.coverage}
  assert status["dog"][0] == "covered" and status["dog"][2] == "pets@1:dog"
  assert status["Cat"][0] == "covered" and status["Cat"][2] == "pets@1:cat"
  assert status["unicorn"] == ("uncovered", "no concept matches this name", "")
  assert task.covered == [True, True, False, True]
  assert task.problem.num_classes == 3 and task.problem.x.shape[0] == 30


def test_chco_selects_the_informative_model(graph, pools):
  models = _models(pools)
  task = selection.task_problem(["dog", "cat"], graph, pools, models)
  from mll_jax.hub import chco
  solution = chco.solve(task.problem, lam=0.05)
  chosen = selection.from_solution(["dog", "cat"], task, solution, models)
  assert chosen.models == ("pets@1",) and chosen.flops_per_image == 1e6
  assert {h for h in chosen.heads} <= {("pets@1", 0), ("pets@1", 1)}
  top = selection.from_solution(["dog", "cat"], task, selection.topk_solution(task, 1), models,
                                "topk")
  assert top.heads == (("pets@1", 0), ("pets@1", 1)) and np.array_equal(top.weights, np.eye(2))


def test_empty_hub_and_uncoverable_tasks_are_clear(graph, pools, tmp_path):
  hub = registry.Hub(tmp_path / "hub")
  hub.set_pools(pools)
  with pytest.raises(selection.EmptyHub, match="no labelled models"):
    selection.select(hub, ["dog"], graph)
  with pytest.raises(selection.EmptyHub, match="unicorn: no concept matches"):
    selection.select(hub, ["unicorn"], graph, models=_models(pools))


@pytest.fixture(scope="module")
def hub_with_models(tmp_path_factory, pools):
  hub = registry.Hub(tmp_path_factory.mktemp("hub"))
  hub.set_pools(pools)
  for i, (name, arch) in enumerate([("a", ARCH), ("b", ARCH), ("c", CLS_ARCH)]):
    hub.register(name, arch, functional.init_variables(arch, seed=i), ["x", "y"])
  return hub


def _selection(heads, weights, bias, models, method="chco", covered=(True, True)):
  return selection.Selection(("p", "q"), covered, tuple(heads), np.asarray(weights, np.float32),
                             np.asarray(bias, np.float32), tuple(models), 0.0, 0.0, (), method)


def _images(n, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (n, 28, 28, 1)).astype(np.uint8)


@pytest.mark.slow
def test_reusing_one_expert_reproduces_its_predictions(hub_with_models):
  chosen = _selection([("a@1", 0), ("a@1", 1)], np.eye(2), [0, 0], ["a@1"])
  fused = reuse.build(chosen, hub_with_models)
  apply, variables = hub_with_models.load("a")
  images = _images(37)
  own = np.asarray(jax.nn.log_softmax(jax.jit(apply)(variables, images)))
  got = fused.predict(images)  # 37 images on 8 devices: padded inside
  np.testing.assert_allclose(got, own, atol=1e-5)
  np.testing.assert_array_equal(got.argmax(-1), own.argmax(-1))
  labels = np.random.default_rng(1).integers(0, 2, 37)
  assert fused.evaluate(images, labels, batch_size=16) == pytest.approx(
      np.mean(own.argmax(-1) == labels))  # 37 images: the last batch is padded


def _each_model_alone(hub, heads, weights, bias, images):
  """The combination computed the slow way: each head's model on its own jitted function."""
  scores = []
  for ref, c in heads:
    apply, variables = hub.load(ref)
    scores.append(np.asarray(jax.nn.log_softmax(jax.jit(apply)(variables, images)))[:, c])
  return np.stack(scores, 1) @ np.asarray(weights) + np.asarray(bias)


@pytest.mark.parametrize("loop", ["vmap", "map", "unroll"])
def test_stacked_and_mixed_architectures_combine_as_weighted(hub_with_models, loop):
  heads = [("a@1", 1), ("b@1", 0), ("c@1", 1)]
  weights = [[1.0, -0.5], [0.25, 2.0], [0.0, 1.0]]
  fused = reuse.build(_selection(heads, weights, [0.1, -0.2], ["a@1", "b@1", "c@1"]),
                      hub_with_models, stacked_loop=loop)
  images = _images(16, seed=3)
  expected = _each_model_alone(hub_with_models, heads, weights, [0.1, -0.2], images)
  np.testing.assert_allclose(fused.predict(images), expected, atol=1e-4)
  assert len(fused.variables) == 2  # a and b stacked (one architecture), c on its own


def test_an_unknown_stacked_loop_names_the_known_ones(hub_with_models):
  chosen = _selection([("a@1", 0)], [[1.0]], [0.0], ["a@1"])
  with pytest.raises(ValueError, match="one of vmap, map, unroll, got 'scan'"):
    reuse.build(chosen, hub_with_models, stacked_loop="scan")


def test_uncovered_classes_are_never_predicted(hub_with_models):
  chosen = _selection([("a@1", 0)], [[1.0]], [0.0], ["a@1"], covered=(False, True))
  logits = reuse.build(chosen, hub_with_models).predict(_images(8))
  assert np.all(np.isneginf(logits[:, 0])) and np.all(logits.argmax(-1) == 1)


@pytest.mark.parametrize("metric", ["logme", "leep", "nce", "hscore"])
def test_rank_scores_every_backbone(hub_with_models, metric):
  from mll_jax.hub import ranking
  images, labels = _images(48, seed=5), np.arange(48) % 3
  ranked = ranking.rank(hub_with_models, images, labels, metric)
  assert sorted(r.ref for r in ranked) == ["a@1", "b@1", "c@1"]
  assert [r.score for r in ranked] == sorted((r.score for r in ranked), reverse=True)
  assert all(np.isfinite(r.score) and r.metric == metric for r in ranked)


def test_rank_refuses_unknown_metrics_and_empty_hubs(hub_with_models, tmp_path):
  from mll_jax.hub import ranking
  with pytest.raises(ValueError, match="Unknown metric 'auc'"):
    ranking.rank(hub_with_models, _images(8), np.zeros(8), "auc")
  with pytest.raises(ValueError, match="is empty: nothing to rank"):
    ranking.rank(registry.Hub(tmp_path / "empty"), _images(8), np.zeros(8))


RESNET_ARCH = dict(ARCH, model={"family": "cnn", "variant": "resnet_mu", "stem": "small"})
CNN_ARCH = dict(ARCH, model={"family": "cnn", "variant": "cnn_mu"})


def _with_random_statistics(variables, seed):
  """Variables whose BatchNorm statistics are not the initial 0 / 1 (so a loss shows)."""
  rng = np.random.default_rng(seed)
  stats = jax.tree.map(lambda s: (rng.uniform(0.5, 1.5, s.shape) if s.ndim else s)
                       .astype(np.float32), variables["model_state"])
  return dict(variables, model_state=stats)


@pytest.fixture(scope="module")
def mixed_hub(tmp_path_factory, pools):
  hub = registry.Hub(tmp_path_factory.mktemp("mixed_hub"))
  hub.set_pools(pools)
  hub.register("vit", ARCH, functional.init_variables(ARCH, seed=0), ["x", "y"])
  for i, (name, arch) in enumerate([("res", RESNET_ARCH), ("res2", RESNET_ARCH),
                                    ("conv", CNN_ARCH)]):
    variables = _with_random_statistics(functional.init_variables(arch, seed=i + 1), seed=i)
    hub.register(name, arch, variables, ["x", "y"])
  return hub


@pytest.mark.slow
def test_batchnorm_statistics_survive_register_and_load(mixed_hub):
  stored = _with_random_statistics(functional.init_variables(RESNET_ARCH, seed=1), seed=0)
  _, loaded = mixed_hub.load("res")
  for a, b in zip(jax.tree.leaves(stored["model_state"]), jax.tree.leaves(loaded["model_state"])):
    np.testing.assert_array_equal(a, b)
  assert mixed_hub.show("res").architecture["model"]["family"] == "cnn"


@pytest.mark.parametrize("loop", ["vmap", "map", "unroll"])
def test_a_mixed_family_selection_equals_each_model_alone(mixed_hub, loop):
  heads = [("vit@1", 0), ("res@1", 1), ("res2@1", 0), ("conv@1", 1)]
  weights = [[1.0, 0.5], [0.25, -1.0], [0.5, 0.5], [-0.3, 2.0]]
  fused = reuse.build(_selection(heads, weights, [0.0, 0.1], [r for r, _ in heads]),
                      mixed_hub, stacked_loop=loop)
  images = _images(16, seed=7)
  expected = _each_model_alone(mixed_hub, heads, weights, [0.0, 0.1], images)
  np.testing.assert_allclose(fused.predict(images), expected, atol=1e-5)
  assert len(fused.variables) == 3  # the two ResNets stacked; the ViT and the CNN alone


def test_an_entry_of_an_unknown_family_names_the_known_ones(tmp_path):
  hub = registry.Hub(tmp_path / "hub")
  hub.register("vit", ARCH, functional.init_variables(ARCH, seed=0), ["x", "y"])
  entry_path = hub.manifest_path("vit@1")
  import json
  entry = json.loads(entry_path.read_text())
  entry["architecture"]["model"]["family"] = "capsnet"
  with pytest.raises(ValueError, match="family must be 'vit' or 'cnn', got 'capsnet'"):
    functional.abstract_variables(entry["architecture"])
