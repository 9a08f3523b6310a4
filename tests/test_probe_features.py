"""experiments/probe_features.py: the frozen MAE encoder's read-outs (the probe's pooled
features are the mean of its tokens), scored on the holdout; a run of another task is refused."""

import json

import numpy as np
import pytest

from experiments import probe_features
from mll_jax import train
from mll_jax.hub import run_import

pytestmark = [pytest.mark.slow, pytest.mark.study]


@pytest.fixture(scope="module")
def mae_run(tmp_path_factory, data_dir):
  from conftest import small_mae_config
  workdir = tmp_path_factory.mktemp("mae")
  train.run(small_mae_config(data_dir, total_steps=3), workdir)
  return workdir


def test_readouts_are_the_probes_features_and_their_tokens(mae_run):
  encoder, config = probe_features.load_encoder(mae_run)
  images = np.random.default_rng(0).integers(0, 255, (5, 28, 28, 1), dtype=np.uint8)
  features = probe_features.readouts(encoder, images, batch=4)  # a partial last batch too
  width = features["gap"].shape[1]
  assert features["tokens"].shape == (5, 49 * width) and features["cls"].shape == (5, width)
  assert features["pixels"].shape == (5, 784)
  np.testing.assert_allclose(features["tokens"].reshape(5, 49, width).mean(1), features["gap"],
                             rtol=1e-5, atol=1e-6)
  assert config.task == "mae"


def _across_programs_tolerance(dtype: str) -> float:
  """Two programs computing the same features (batched differently, jitted or eager) sum in
  different orders; under bfloat16_matmul (the CPU default) a float32 value a rounding apart can
  then round to neighbouring bfloat16 matmul operands (measured up to 1.8e-4 on unit-norm
  features)."""
  return 1e-5 if dtype == "float32" else 5e-4


def test_block_readouts_end_in_what_the_probe_reads(mae_run):
  encoder, config = probe_features.load_encoder(mae_run)
  images = np.random.default_rng(1).integers(0, 255, (3, 28, 28, 1), dtype=np.uint8)
  final = probe_features.readouts(encoder, images)
  blocks = probe_features.block_readouts(encoder, images, batch=2)
  depth, width = len(encoder.transformer.blocks), final["gap"].shape[1]
  assert sorted(blocks) == sorted([*(f"{kind}@{k}" for k in range(1, depth)
                                     for kind in ("gap", "tokens")), "gap@all"])
  assert blocks["gap@all"].shape == (3, depth * width)
  # The last block's mean token, normalised, is the probe's own `gap`.
  tolerance = _across_programs_tolerance(config.model.dtype)
  np.testing.assert_allclose(blocks["gap@all"][:, -width:], final["gap"], rtol=tolerance,
                             atol=tolerance)
  if depth > 1:
    np.testing.assert_allclose(blocks["gap@all"][:, :width], blocks["gap@1"], rtol=1e-6)
    assert not np.allclose(blocks["gap@1"], final["gap"])


def test_last_block_readouts_are_what_the_probe_reads_with_read_blocks(mae_run):
  from flax import nnx
  from mll_jax.models import heads, precision
  encoder, config = probe_features.load_encoder(mae_run)
  images = np.random.default_rng(2).integers(0, 255, (3, 28, 28, 1), dtype=np.uint8)
  blocks = probe_features.last_block_readouts(encoder, images, batch=2)
  depth = len(encoder.transformer.blocks)
  assert sorted(blocks) == sorted(f"{kind}@last{k}" for k in range(2, depth + 1)
                                  for kind in ("gap", "cls"))
  for pool in ("gap", "cls"):
    probe = heads.Classifier(encoder.size, num_classes=3, image_size=28, channels=1, pool=pool,
                             read_blocks=depth, rngs=nnx.Rngs(0))
    probe = precision.with_matmul_policy(probe, config.model.dtype)  # as the encoder was trained
    nnx.update(probe.encoder, nnx.state(encoder, nnx.Param))
    tolerance = _across_programs_tolerance(config.model.dtype)
    np.testing.assert_allclose(blocks[f"{pool}@last{depth}"], probe(images)[1]["pre_logits"],
                               rtol=tolerance, atol=tolerance)


def test_the_quick_run_scores_every_readout_on_the_holdout(mae_run):
  lines = probe_features.run({"encoder": mae_run, "quick": True, "fractions": ["10%"],
                              "cs": [1.0], "validation": 0.1, "command": "test"})
  rows = [line.split(" | ") for line in lines if line.startswith("| 10%")]
  assert [row[1] for row in rows] == ["pixels", "gap", "cls", "tokens"]
  # 1-NN on pixels, 10 classes (chance 0.1), scored on the holdout.
  assert float(rows[0][3]) > 0.5, rows[0]
  assert any("holdout: 800 images" in line for line in lines)


def test_a_run_of_another_task_is_refused(tmp_path):
  (tmp_path / "config.json").write_text(json.dumps({"task": "supervised"}))
  with pytest.raises(run_import.RunImportError, match="give an MAE pre-training run"):
    probe_features.load_encoder(tmp_path)
