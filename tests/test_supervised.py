"""Supervised fine-tuning: end to end, resume, init from an MAE run, labelled subsets."""


import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import nnx

from mll_jax import checkpoint, sweep, train
from mll_jax.models import heads, vit
from test_train import _assert_same, _finished_checkpoints, _metrics, _read_params


@pytest.mark.slow
def test_finetune_end_to_end(make_finetune_config, tmp_path):
  workdir = tmp_path / "run"
  train.run(make_finetune_config(), workdir)
  metrics = _metrics(workdir)
  evals = [m for m in metrics if "classification/accuracy" in m]
  assert [m["step"] for m in evals] == [0, 6]
  assert all(np.isfinite(m["loss"]) and 0 <= m["accuracy"] <= 1 for m in metrics if "loss" in m)
  assert evals[-1]["classification/examples"] == 64


@pytest.mark.slow
def test_init_from_an_mae_run_loads_the_encoder_and_a_fresh_head(make_config,
                                                                 make_finetune_config, tmp_path):
  train.run(make_config(total_steps=3), tmp_path / "mae")
  mae_params = _read_params(tmp_path / "mae", 3)
  config = make_finetune_config(init_from=str(tmp_path / "mae"), total_steps=1, warmup_steps=0,
                                log_steps=1, **{"optim.base_lr": 0.0})
  train.run(config, tmp_path / "ft")
  tuned = _read_params(tmp_path / "ft", 1)
  encoder_keys = [k for k in tuned if k.startswith("encoder/")]
  assert encoder_keys and all(k in mae_params for k in encoder_keys)
  _assert_same({k: tuned[k] for k in encoder_keys}, {k: mae_params[k] for k in encoder_keys})
  assert np.abs(tuned["head/kernel"]).max() < 1e-3  # the fresh, near-zero head


@pytest.mark.slow
def test_init_from_a_relative_step_folder(make_config, make_finetune_config, tmp_path,
                                          monkeypatch):
  # orbax reads a relative path's metadata as missing; the README's `runs/mae-XXXX` is relative.
  train.run(make_config(total_steps=3), tmp_path / "mae")
  monkeypatch.chdir(tmp_path)
  config = make_finetune_config(init_from="mae/checkpoints/3", total_steps=1, warmup_steps=0,
                                log_steps=1, **{"optim.base_lr": 0.0})
  train.run(config, tmp_path / "ft")
  tuned, mae_params = _read_params(tmp_path / "ft", 1), _read_params(tmp_path / "mae", 3)
  _assert_same({k: tuned[k] for k in tuned if k.startswith("encoder/")},
               {k: mae_params[k] for k in tuned if k.startswith("encoder/")})


@pytest.mark.slow
def test_init_from_another_architecture_lists_the_mismatches(make_config, make_finetune_config,
                                                             tmp_path):
  train.run(make_config(total_steps=3), tmp_path / "mae")
  config = make_finetune_config(init_from=str(tmp_path / "mae"), **{"model.variant": "tiny"})
  with pytest.raises(checkpoint.CheckpointError, match="(?s)another architecture.*encoder/"):
    train.run(config, tmp_path / "ft")
  assert not (tmp_path / "ft").exists() or not _finished_checkpoints(tmp_path / "ft")


def test_labels_leaving_a_class_empty_fail_before_anything_is_written(make_finetune_config,
                                                                      tmp_path):
  config = make_finetune_config(**{"data.labels": "k=900"})  # 800 train images a class
  with pytest.raises(ValueError, match="leaves class 'bear'"):
    train.run(config, tmp_path / "run")
  assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_drop_path_is_random_in_training_and_off_in_evaluation():
  model = heads.Classifier("mu", num_classes=3, image_size=8, channels=1, drop_path_rate=0.5,
                           rngs=nnx.Rngs(0))
  images = jax.random.normal(jax.random.key(0), (4, 8, 8, 1))
  _, a = model(images, jax.random.key(1))
  _, b = model(images, jax.random.key(2))
  assert not np.allclose(a["pre_logits"], b["pre_logits"])
  np.testing.assert_array_equal(model(images)[0], model(images)[0])


def test_drop_path_scales_kept_branches():
  x = jnp.ones((1000, 3))
  out = vit.drop_path(x, 0.25, jax.random.key(0))
  kept = np.asarray(out[:, 0]) > 0
  assert 0.65 < kept.mean() < 0.85
  np.testing.assert_allclose(np.asarray(out[kept]), 1 / 0.75)


@pytest.mark.slow
def test_linear_probe_trains_only_the_head(make_config, make_probe_config,
                                                               tmp_path):
  train.run(make_config(total_steps=3), tmp_path / "mae")
  mae_params = _read_params(tmp_path / "mae", 3)
  workdir = tmp_path / "probe"
  train.run(make_probe_config(init_from=str(tmp_path / "mae")), workdir)
  probed = _read_params(workdir, 6)
  encoder_keys = [k for k in probed if k.startswith("encoder/")]
  _assert_same({k: probed[k] for k in encoder_keys}, {k: mae_params[k] for k in encoder_keys})
  assert not np.allclose(probed["head/kernel"], 0.0)
  stats = ocp.StandardCheckpointer().restore(workdir / "checkpoints" / "6" / "state")["model_state"]
  assert np.asarray(stats["head_norm"]["mean"]).std() > 0  # BatchNorm statistics were learnt
  accuracies = [m["classification/accuracy"] for m in _metrics(workdir)
                if "classification/accuracy" in m]
  assert len(accuracies) == 2


@pytest.mark.slow
def test_token_probe_trains_a_head_on_every_patch_token(make_config, make_probe_config,
                                                        tmp_path):
  train.run(make_config(total_steps=3), tmp_path / "mae")
  workdir = tmp_path / "probe"
  # One block's tokens, as the `tokens` config arg sets (the probe's default reads more).
  train.run(make_probe_config(init_from=str(tmp_path / "mae"), total_steps=3,
                              **{"model.pool": "tokens", "model.read_blocks": 1}), workdir)
  probed = _read_params(workdir, 3)
  mae_params = _read_params(tmp_path / "mae", 3)
  encoder_keys = [k for k in probed if k.startswith("encoder/")]
  _assert_same({k: probed[k] for k in encoder_keys}, {k: mae_params[k] for k in encoder_keys})
  width, patches = mae_params["encoder/cls_token"].shape[-1], (28 // 4) ** 2
  assert probed["head/kernel"].shape[0] == width * patches
  assert not np.allclose(probed["head/kernel"], 0.0)


@pytest.mark.slow
def test_mixup_runs_and_mixes_targets(make_finetune_config, tmp_path):
  train.run(make_finetune_config(mixup=0.8, total_steps=2, warmup_steps=1, log_steps=1), tmp_path / "run")
  losses = [m["loss"] for m in _metrics(tmp_path / "run") if "loss" in m]
  assert len(losses) == 2 and all(np.isfinite(losses))


@pytest.mark.slow
def test_a_validation_split_carved_from_train_is_evaluated(make_finetune_config, tmp_path):
  config = make_finetune_config(**{
      "data.validation": 0.1, "data.labels": "100%",
      "evals.validation": {"kind": "classification", "split": "holdout", "log_steps": 0,
                           "num_examples": 0, "batch_size": 32}})
  train.run(config, tmp_path / "run")
  final = sweep.final_metrics(tmp_path / "run")
  assert final["validation/examples"] == 800  # 10% of animal_mnist's 8,000 training images


def test_evaluators_read_the_training_split_without_its_holdout(make_finetune_config):
  from mll_jax.data import holdout, pipeline, sources
  from mll_jax.evaluators.context import EvalContext
  config = make_finetune_config(**{"data.validation": 0.1})
  builder = sources.get_builder(config.data.name, config.data.data_dir)
  ctx = EvalContext(config, None, builder, None, None)
  rest, held = holdout.carve(sources.data_source(builder, "train"), config.data,
                             sources.info(builder).class_names)
  assert len(rest) == 7200 and len(held) == 800
  # A few-shot probe scored on the holdout fits on the rest, never on the held-out images.
  for split, expected in (("train", rest), ("holdout", held)):
    np.testing.assert_array_equal(ctx.arrays(split, 0)["image"],
                                  pipeline.eval_arrays(expected, size=28, channels=1)["image"])


@pytest.mark.parametrize("overrides,message", [
    ({"data.validation": 1.5},
     r"config.data.validation=1.5 is out of range: it must be a number in \[0, 1\)"),
    ({"evals.validation": {"kind": "classification", "split": "holdout", "log_steps": 0,
                           "batch_size": 32}}, "config.data.validation is 0"),
    ({"data.augment": "crop+rotate"}, "unknown augmentation 'rotate'"),
    ({"total_steps": 0, "num_epochs": 0.0}, "The run has no steps"),
])
def test_bad_validation_augmentation_and_budget_fail_before_anything_is_written(
    make_finetune_config, tmp_path, overrides, message):
  with pytest.raises((ValueError, train.RunError), match=message):
    train.run(make_finetune_config(**overrides), tmp_path / "run")
  assert not (tmp_path / "run").exists()
