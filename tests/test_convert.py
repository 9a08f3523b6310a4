"""Weight import: timm's real ViT forward pass vs ours on the same random weights (1e-4)."""

import numpy as np
import pytest
import torch
from flax import nnx

import torchvision_stub
from mll_jax.models import convert, heads, vit

torchvision_stub.install_if_needed()
import timm.models.vision_transformer as timm_vit  # noqa: E402


@pytest.mark.parametrize("variant,image_size,channels", [("mu", 28, 1), ("mini", 32, 3)])
def test_timm_vit_parity(variant, image_size, channels, tmp_path):
  size = vit.encoder_size(variant)
  torch.manual_seed(0)
  reference = timm_vit.VisionTransformer(
      img_size=image_size, patch_size=4, in_chans=channels, num_classes=5,
      embed_dim=size.width, depth=size.depth, num_heads=size.heads,
      mlp_ratio=size.mlp_dim / size.width, global_pool="token").eval()
  with torch.no_grad():  # every weight random, so no zero-initialised part hides a mistake
    for p in reference.parameters():
      p.normal_(0.0, 0.2)
  state = {k: v.numpy() for k, v in reference.state_dict().items()}
  from safetensors.numpy import save_file
  save_file(state, str(tmp_path / "vit.safetensors"))

  params = convert.vit_params_from_torch(convert.load_state_dict(tmp_path / "vit.safetensors"),
                                         patch_size=4, channels=channels)
  model = heads.Classifier(variant, num_classes=5, image_size=image_size, channels=channels,
                           pool="cls", posemb="learn", rngs=nnx.Rngs(0))
  graphdef, _ = nnx.split(model)
  ours = nnx.merge(graphdef, params)

  images = np.random.default_rng(0).normal(size=(3, image_size, image_size, channels))
  images = images.astype(np.float32)
  expected = reference(torch.from_numpy(images.transpose(0, 3, 1, 2))).detach().numpy()
  got = np.asarray(ours(images)[0])
  np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)


def test_pth_files_load_with_weights_only(tmp_path):
  torch.save({"model": {"cls_token": torch.ones(1, 1, 4)}}, tmp_path / "a.pth")
  assert convert.load_state_dict(tmp_path / "a.pth")["cls_token"].shape == (1, 1, 4)


def test_unknown_keys_and_wrong_patch_shape_are_named():
  state = {"patch_embed.proj.weight": np.zeros((8, 3, 4, 4)), "patch_embed.proj.bias": np.zeros(8),
           "cls_token": np.zeros((1, 1, 8)), "norm.weight": np.ones(8), "norm.bias": np.zeros(8),
           "something.else": np.zeros(3), "decoder_embed.weight": np.zeros((2, 8))}
  with pytest.raises(convert.ConversionError, match="'something.else'"):
    convert.vit_params_from_torch(state, patch_size=4, channels=3)
  with pytest.raises(convert.ConversionError, match="expected \\[width, 1, 4, 4\\]"):
    convert.vit_params_from_torch(state, patch_size=4, channels=1)
