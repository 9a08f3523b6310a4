"""The ResNet trunk of the convolutional family: timm's (torchvision's layout) ResNet-18 and
ResNet-50 forward pass in eval mode vs ours on the same random weights and running statistics
(1e-4), selective kernels, the small stem, sharding on the 8-device mesh, a training run and
its checkpoint, and mismatched state dicts refused with their keys listed."""

import jax
import numpy as np
import torch
from flax import nnx
import pytest

import torchvision_stub
from mll_jax import train
from mll_jax.models import cnn, convert, convert_resnet, resnet

torchvision_stub.install_if_needed()
import timm.models.resnet as timm_resnet  # noqa: E402


def _timm(depth: int, num_classes: int = 7):
  make = {18: timm_resnet.resnet18, 50: timm_resnet.resnet50}[depth]
  model = make(pretrained=False, num_classes=num_classes)
  model.eval()
  with torch.no_grad():  # random weights and statistics everywhere: nothing hides at 0 or 1
    for module in model.modules():
      if isinstance(module, torch.nn.BatchNorm2d):
        module.running_mean.normal_(0.0, 0.1)
        module.running_var.uniform_(0.5, 1.5)
        module.weight.uniform_(0.5, 1.5)
        module.bias.normal_(0.0, 0.1)
  return model


def _ours(variant, tree, num_classes=7):
  """Our classifier holding `tree` (params with the BatchNorm statistics beside them)."""
  model = cnn.CNNClassifier(variant, num_classes=num_classes, image_size=64, channels=3,
                            rngs=nnx.Rngs(0))
  graphdef, state = nnx.split(model)
  nnx.replace_by_pure_dict(state, tree)
  return nnx.merge(graphdef, state)


@pytest.mark.slow
@pytest.mark.parametrize("depth", [18, 50])
def test_parity_with_timm_in_eval_mode(depth):
  reference = _timm(depth)
  state = {k: v.numpy() for k, v in reference.state_dict().items()}
  variables = convert_resnet.resnet_variables_from_torch(state, f"resnet{depth}")
  model = _ours(f"resnet{depth}", _merge_state(variables))
  images = np.random.default_rng(0).uniform(-1, 1, (2, 64, 64, 3)).astype(np.float32)
  with torch.no_grad():
    expected = reference(torch.from_numpy(images.transpose(0, 3, 1, 2))).numpy()
  logits, _ = model(images)
  np.testing.assert_allclose(np.asarray(logits), expected, atol=1e-4, rtol=1e-4)


def _merge_state(variables):
  """One nnx state tree: the params with the BatchNorm statistics put beside them."""
  def put(tree, extra):
    for key, value in extra.items():
      if isinstance(value, dict):
        put(tree.setdefault(key, {}), value)
      else:
        tree[key] = value
  merged = variables["params"]
  put(merged, variables["model_state"])
  return merged


def test_a_state_dict_of_another_depth_is_refused_with_its_keys():
  state = {k: v.numpy() for k, v in _timm(18).state_dict().items()}
  with pytest.raises(convert.ConversionError, match=r"(?s)not a torchvision/timm resnet50 .*"
                                                    r"missing for resnet50: layer1\.0\.conv3"):
    convert_resnet.resnet_variables_from_torch(state, "resnet50")
  state["extra.weight"] = np.zeros(3)
  with pytest.raises(convert.ConversionError, match="not a key of resnet18: extra.weight"):
    convert_resnet.resnet_variables_from_torch(state, "resnet18")


def test_variant_names_and_the_unknown_ones():
  assert resnet.resnet_size("resnet50x2_sk") == resnet.ResNetSize(
      (3, 4, 6, 3), True, width_multiplier=2, selective_kernel=True)
  with pytest.raises(ValueError, match="Unknown ResNet variant 'resnet20'"):
    resnet.resnet_size("resnet20")


@pytest.mark.slow
def test_selective_kernels_and_the_small_stem_shapes():
  model = resnet.ResNet("resnet50_sk", image_size=28, channels=1, stem="small",
                        rngs=nnx.Rngs(0))
  images = np.zeros((2, 28, 28, 1), np.uint8)
  pre_logits, aux = model(images, jax.random.key(0))  # training mode: batch statistics
  assert pre_logits.shape == (2, 2048) and aux["encoded"].shape == (2, 4, 4, 2048)
  assert isinstance(model.blocks[0].conv2, resnet.SelectiveKernel)
  with pytest.raises(ValueError, match="stem must be 'imagenet'"):
    resnet.ResNet("resnet18", image_size=28, channels=1, stem="tiny", rngs=nnx.Rngs(0))


@pytest.mark.slow
def test_a_resnet_trains_sharded_on_8_devices_and_keeps_its_statistics(make_finetune_config,
                                                                     tmp_path):
  config = make_finetune_config(**{"model.family": "cnn", "model.variant": "resnet_mu",
                                   "total_steps": 3, "warmup_steps": 1,
                                   "mesh": (("data", 4), ("fsdp", 2))})
  config.model.stem = "small"
  train.run(config, tmp_path / "run")
  from test_train import _read_params
  import orbax.checkpoint as ocp
  stored = ocp.StandardCheckpointer().restore(tmp_path / "run" / "checkpoints" / "3" / "state")
  stats = jax.tree.leaves(stored["model_state"])
  assert stats and any(np.abs(np.asarray(s)).sum() > 0 for s in stats)
  assert "encoder/blocks/0/conv1/kernel" in _read_params(tmp_path / "run", 3)


@pytest.mark.slow
def test_simclr_on_a_resnet_then_a_linear_probe_of_it(data_dir, make_simclr_config, tmp_path):
  from conftest import small_classifier_config
  simclr = make_simclr_config("resnet_mu")
  assert (simclr.model.family, simclr.model.stem) == ("cnn", "small")
  train.run(simclr, tmp_path / "simclr")
  probe = small_classifier_config("linear_probe", data_dir, "resnet_mu",
                                  init_from=str(tmp_path / "simclr"))
  train.run(probe, tmp_path / "probe")
  assert (tmp_path / "probe" / "checkpoints" / "6").is_dir()
  # The trunk (and its BatchNorm statistics) came from the SimCLR run and stayed frozen.
  from test_train import _read_params
  pretrained, probed = _read_params(tmp_path / "simclr", 6), _read_params(tmp_path / "probe", 6)
  key = "encoder/blocks/0/conv1/kernel"
  np.testing.assert_array_equal(probed[key], pretrained[key])
