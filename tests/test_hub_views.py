"""The hub's pools from the offline data sets, and its human-readable views (the CLI's `list`
and `select` output), in process: the fast tier's share of what the hub CLI tests end to end."""

import json

import numpy as np
import pytest

from mll_jax.data import sources
from mll_jax.hub import (concept_graph, pool_sources, registry, report, run_import, selection,
                         task_data)


def test_pools_from_a_data_set_hold_capped_seeded_images_of_its_concepts(data_dir):
  pools = pool_sources.pools_from_datasets(["animal_mnist"], cap=3, seed=0, data_dir=data_dir)
  again = pool_sources.pools_from_datasets(["animal_mnist"], cap=3, seed=0, data_dir=data_dir)
  other = pool_sources.pools_from_datasets(["animal_mnist"], cap=3, seed=1, data_dir=data_dir)
  assert pools.fingerprint == again.fingerprint != other.fingerprint
  assert pools.images.dtype == np.uint8 and pools.images.shape[1:] == (28, 28, 1)
  leaves = set(concept_graph.class_nodes("animal_mnist").values())
  # Each of the 10 classes gives 3 images of its leaf concept; inner concepts sample those.
  assert leaves <= set(pools.node_ids) and len(leaves) == 10
  for node in leaves:
    assert len(pools.members[pools.node_ids.index(node)]) == 3, node
  assert all(len(m) <= 3 for m in pools.members)


def test_an_empty_hub_says_so(tmp_path):
  assert report.hub_table(registry.Hub(tmp_path / "hub")) == (
      f"The hub {tmp_path / 'hub'} is empty.")


def _selection(converged: bool) -> selection.Selection:
  coverage = (selection.ClassCoverage("cat", "n02121620", "name", 3, "pets@1:cat", 0.9,
                                      "covered"),
              selection.ClassCoverage("okapi", None, "none", 0, "", 0.0, "uncovered",
                                      "no concept of that name"))
  return selection.Selection(
      classes=("cat", "okapi"), covered=(True, False), heads=(("pets@1", 0),),
      weights=np.array([[1.25]]), bias=np.zeros(1), models=("pets@1",), flops_per_image=2e6,
      objective=0.125, coverage=coverage, iterations=40, converged=converged)


def test_the_selection_summary_reports_coverage_weights_and_convergence():
  text = report.selection_summary(_selection(converged=True))
  assert "uncovered (no concept of that name)" in text
  assert "pets@1:0" in text and "+1.250" in text
  assert "1 model(s), 2.0 MFLOPs/image, objective 0.1250 (converged in 40 FISTA steps)" in text
  assert "NOT converged after 40 FISTA steps" in report.selection_summary(
      _selection(converged=False))


def test_task_images_match_class_names_loosely_and_name_the_classes_a_set_lacks(
    data_dir, monkeypatch):
  monkeypatch.setenv("TFDS_DATA_DIR", data_dir)
  images, labels = task_data.task_images("animal_mnist", ["Dog", "cat"], max_examples=64)
  assert images.shape == (64, 28, 28, 1) and set(np.unique(labels)) == {0, 1}
  with pytest.raises(sources.DataError,
                     match="animal_mnist has no class 'okapi'; its classes: .*cat"):
    task_data.task_images("animal_mnist", ["cat", "okapi"])
  images, labels = task_data.labelled_images("animal_mnist", "k=2")
  assert images.shape[0] == 20 and np.bincount(labels).tolist() == [2] * 10


def test_a_run_import_names_what_is_not_a_finished_classifier_run(tmp_path):
  with pytest.raises(run_import.RunImportError, match="no config.json"):
    run_import.read_run(tmp_path)
  (tmp_path / "config.json").write_text(json.dumps({"task": "mae"}))
  with pytest.raises(run_import.RunImportError, match="a 'mae' run; hub entries are classifiers"):
    run_import.read_run(tmp_path)
  # Known data sets map classes through the shipped table; other names by SDAG lookup.
  nodes = run_import.class_nodes("animal_mnist", ["cat", "dog"])
  assert nodes == tuple(concept_graph.class_nodes("animal_mnist")[n] for n in ("cat", "dog"))
  assert run_import.class_nodes("my_folder", ["cat", "no such concept xyz"])[1] == ""
  assert run_import.class_nodes("my_folder", ["cat"])[0] != ""
