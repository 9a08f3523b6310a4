"""The CNN family: shapes and the reference size, BatchNorm as model state, the same steps on one
device and on the 8-device data x fsdp mesh, checkpoint round trip with exact resume, and use as
a hub expert (its BatchNorm statistics survive register -> load)."""


import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import nnx

from conftest import SMALL_RUN, load_config, small_classifier_config
from mll_jax import optim, sharding, steps, tasks, train
from mll_jax.data import pipeline, sources, transforms
from mll_jax.hub import functional, registry, run_import
from mll_jax.models import cnn
from test_train import _assert_same, _flat, _read_params


@pytest.mark.slow
@pytest.mark.parametrize("variant,image_size,channels", [("cnn_mu", 28, 1), ("cnn_s", 32, 3)])
def test_shapes_and_named_representations(variant, image_size, channels):
  model = cnn.CNNClassifier(variant, num_classes=7, image_size=image_size, channels=channels,
                            rngs=nnx.Rngs(0))
  logits, aux = model(jnp.zeros((2, image_size, image_size, channels), jnp.uint8))
  width = cnn.CNN_SIZES[variant].widths[-1]
  assert logits.shape == (2, 7) and aux["pre_logits"].shape == (2, width)
  stages = len(cnn.CNN_SIZES[variant].widths)
  assert aux["encoded"].shape[1] == -(-image_size // 2 ** stages)


def test_cnn_s_is_the_94k_parameter_reference():
  model = cnn.CNNClassifier("cnn_s", num_classes=10, image_size=28, channels=1, rngs=nnx.Rngs(0))
  _, params, model_state = steps.split_model(model)
  count = sum(x.size for x in jax.tree.leaves(params))
  assert 90_000 <= count <= 96_000, count
  assert model_state  # BatchNorm running statistics are state, not params


def test_batchnorm_uses_batch_statistics_only_in_training():
  model = cnn.CNNClassifier("cnn_mu", num_classes=3, image_size=8, channels=1, rngs=nnx.Rngs(0))
  images = np.random.default_rng(0).integers(0, 255, (4, 8, 8, 1)).astype(np.uint8)
  before = _flat(steps.split_model(model)[2])
  evaluation = model(images)[0]
  assert all(np.array_equal(v, _flat(steps.split_model(model)[2])[k]) for k, v in before.items())
  training = model(images, jax.random.key(0))[0]
  after = _flat(steps.split_model(model)[2])
  assert any(not np.array_equal(v, after[k]) for k, v in before.items())
  assert not np.allclose(evaluation, training)


def test_bad_variant_and_small_images_are_named():
  with pytest.raises(ValueError, match="known CNN variants: cnn_mu, cnn_s"):
    cnn.cnn_size("cnn_xl")
  with pytest.raises(ValueError, match="too small for 3 pooling stages"):
    cnn.CNN("cnn_s", image_size=4, channels=1, rngs=nnx.Rngs(0))


@pytest.fixture(scope="module")
def cnn_config(data_dir):
  return lambda **overrides: load_config("finetune", "cnn_mu", data_dir, {
      **SMALL_RUN, "evals.classification.num_examples": 64,
      "evals.classification.batch_size": 32, **overrides})


def _three_steps(config, devices):
  task = tasks.get("supervised")
  mesh = sharding.make_mesh(config.mesh, devices)
  builder = sources.get_builder(config.data.name, config.data.data_dir)
  info = sources.info(builder)
  compiled = steps.build(task, config, info, optim.make(config.optim, config.batch_size, 10, 2),
                         mesh)
  ds = pipeline.train_dataset(sources.data_source(builder, "train"),
                              local_batch_size=config.batch_size, seed=0,
                              transform=transforms.train_transform(config.data))
  it = pipeline.train_iterator(ds)
  state = compiled.init()
  losses = []
  for _ in range(3):
    state, metrics = compiled.train_step(state, sharding.global_batch(next(it),
                                                                      compiled.batch_sharding))
    losses.append(float(metrics["loss"]))
  return losses, state


@pytest.mark.slow
def test_one_device_and_eight_device_mesh_agree(cnn_config):
  losses_1, state_1 = _three_steps(cnn_config(mesh=(("data", 1), ("fsdp", 1))),
                                   jax.devices()[:1])
  losses_8, state_8 = _three_steps(cnn_config(mesh=(("data", 4), ("fsdp", 2))), jax.devices())
  np.testing.assert_allclose(losses_8, losses_1, rtol=1e-5)
  for part in ("params", "model_state"):  # BatchNorm statistics too: batch-wide, not per shard
    jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b),
                                                         atol=2e-5), state_1[part], state_8[part])
  kernel = state_8["params"]["encoder"]["blocks"][1]["conv"]["kernel"]
  assert kernel.shape == (3, 3, 8, 16) and "fsdp" in tuple(kernel.sharding.spec)


def _read_state(workdir, step):
  restored = ocp.StandardCheckpointer().restore(workdir / "checkpoints" / str(step) / "state")
  return _flat(restored["model_state"])


@pytest.mark.slow
def test_a_cnn_expert_registers_and_loads_with_its_batchnorm(data_dir, tmp_path):
  workdir = tmp_path / "expert"
  config = load_config("expert", "cnn_mu", data_dir, {
      **SMALL_RUN, "classes": "cat,dog,horse", "evals.classification.num_examples": 0})
  train.run(config, workdir)
  architecture, variables, names, _ = run_import.read_run(workdir)
  assert architecture["model"]["family"] == "cnn" and names == ("cat", "dog", "horse")
  hub = registry.Hub(tmp_path / "hub")
  entry = hub.register("pets_cnn", architecture, variables, names, source=str(workdir))
  apply, loaded = hub.load(entry.ref)
  apply = jax.jit(apply)
  assert entry.flops_per_image > 0
  _assert_same(_flat(loaded["model_state"]), _flat(variables["model_state"]))
  images = np.random.default_rng(0).integers(0, 255, (5, 28, 28, 1)).astype(np.uint8)
  np.testing.assert_allclose(np.asarray(apply(loaded, images)),
                             np.asarray(apply(variables, images)), atol=1e-6)
  # The running statistics matter: fresh statistics give other logits.
  fresh = dict(loaded, model_state=functional.init_variables(architecture)["model_state"])
  assert not np.allclose(np.asarray(apply(fresh, images)), np.asarray(apply(loaded, images)))


@pytest.mark.slow
def test_simclr_pre_trains_a_plain_cnn_that_fine_tuning_starts_from(data_dir,
                                                                     make_simclr_config,
                                                                     tmp_path):
  simclr = make_simclr_config("cnn_mu")
  assert (simclr.model.family, simclr.model.variant) == ("cnn", "cnn_mu")
  train.run(simclr, tmp_path / "simclr")
  finetune = small_classifier_config("finetune", data_dir, "cnn_mu",
                                     init_from=str(tmp_path / "simclr"), **{"optim.base_lr": 0.0})
  train.run(finetune, tmp_path / "finetune")
  pretrained = _read_params(tmp_path / "simclr", 6)
  tuned = _read_params(tmp_path / "finetune", 6)
  kernels = [k for k in pretrained if k.startswith("encoder/") and k.endswith("kernel")]
  assert kernels
  for key in kernels:  # at lr 0 the trunk is the SimCLR run's
    np.testing.assert_array_equal(tuned[key], pretrained[key])
