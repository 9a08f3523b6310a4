"""SimCLRv2's fine-tuning from the first layer of the pre-trained projection head
(`config.model.projection_layers`): the classifier keeps that layer in front of its head, it
loads from the SimCLR run by name, and bad values or a mismatched width are refused clearly."""

import numpy as np
import pytest
from flax import nnx

from conftest import SMALL_RUN, load_config
from mll_jax import train
from mll_jax.checkpoint import CheckpointError
from mll_jax.models import cnn, heads
from test_train import _read_params


def _shapes(model) -> dict:
  return {"/".join(map(str, path)): value.shape
          for path, value in nnx.to_flat_state(nnx.state(model, nnx.Param))}


@pytest.mark.parametrize("family", ["vit", "cnn"])
def test_the_classifier_keeps_the_projection_layers_it_is_given(family):
  make = ((lambda **kw: heads.Classifier("mu", image_size=28, channels=1, patch_size=4, **kw))
          if family == "vit" else
          (lambda **kw: cnn.CNNClassifier("cnn_mu", image_size=28, channels=1, **kw)))
  plain = make(num_classes=5, rngs=nnx.Rngs(0))
  kept = make(num_classes=5, projection_layers=1, proj_hidden=24, rngs=nnx.Rngs(0))
  width = plain.head.in_features
  assert not any(k.startswith("projection/") for k in _shapes(plain))
  shapes = _shapes(kept)
  assert shapes["projection/layers/0/kernel"] == (width, 24)
  assert shapes["head/kernel"] == (24, 5)
  assert not any(k.startswith("projection/layers/1/") for k in shapes)
  images = np.random.default_rng(0).integers(0, 255, (3, 28, 28, 1)).astype(np.uint8)
  logits, _ = kept(images)
  assert logits.shape == (3, 5) and np.isfinite(np.asarray(logits)).all()
  for bad in (-1, 1.5, True, "1"):
    with pytest.raises(ValueError, match="projection_layers must be a whole number >= 0"):
      make(num_classes=5, projection_layers=bad, rngs=nnx.Rngs(0))


@pytest.fixture(scope="module")
def simclr_run(tmp_path_factory, data_dir):
  config = load_config("simclr", "mu", data_dir, {
      **SMALL_RUN, "evals.fewshot.num_train_examples": 200, "evals.fewshot.num_test_examples": 64,
      "evals.fewshot.shots": (2,), "evals.fewshot.seeds": 1, "evals.fewshot.batch_size": 32})
  workdir = tmp_path_factory.mktemp("simclr") / "run"
  train.run(config, workdir)
  return workdir


@pytest.mark.slow
def test_fine_tuning_starts_from_the_simclr_runs_first_projection_layer(simclr_run,
                                                                        make_finetune_config,
                                                                        tmp_path):
  config = make_finetune_config(init_from=str(simclr_run), **{
      "model.projection_layers": 1, "optim.base_lr": 0.0})
  train.run(config, tmp_path / "finetune")
  pretrained, tuned = _read_params(simclr_run, 6), _read_params(tmp_path / "finetune", 6)
  for key in ("projection/layers/0/kernel", "projection/layers/0/bias"):
    np.testing.assert_array_equal(tuned[key], pretrained[key])  # at lr 0: as pre-trained
  assert not any(k.startswith("projection/layers/1/") for k in tuned)
  # The head reads the kept layer's output, as wide as pre-trained.
  assert tuned["head/kernel"].shape[0] == pretrained["projection/layers/0/kernel"].shape[1]


def test_a_projection_width_other_than_the_runs_is_refused_naming_the_layer(
    simclr_run, make_finetune_config, tmp_path):
  config = make_finetune_config(init_from=str(simclr_run), **{
      "model.projection_layers": 1, "model.proj_hidden": 64})
  with pytest.raises(CheckpointError, match="projection/layers/0"):
    train.run(config, tmp_path / "finetune")
  assert not (tmp_path / "finetune" / "checkpoints").exists()
