"""Weight import: timm's real ViT forward pass (and MAE's fine-tuning ViT, transcribed on top of
timm's) vs ours on the same random weights, to 1e-4 on logits and pooled features."""

import functools

import numpy as np
import torch
from flax import nnx
import pytest
from safetensors.numpy import save_file

import torchvision_stub
from mll_jax.models import convert, heads, vit

torchvision_stub.install_if_needed()
import timm.models.vision_transformer as timm_vit  # noqa: E402


class MAEFineTuneViT(timm_vit.VisionTransformer):
  """facebookresearch/mae `models_vit.VisionTransformer`, transcribed: with `global_pool` the
  final `norm` is deleted and `fc_norm` runs after averaging the patch tokens."""

  def __init__(self, global_pool=False, **kwargs):
    super().__init__(**kwargs)
    self.global_pool = global_pool
    if self.global_pool:
      self.fc_norm = kwargs["norm_layer"](kwargs["embed_dim"])
      del self.norm

  def forward_features(self, x):
    B = x.shape[0]
    x = self.patch_embed(x)
    cls_tokens = self.cls_token.expand(B, -1, -1)
    x = torch.cat((cls_tokens, x), dim=1)
    x = x + self.pos_embed
    x = self.pos_drop(x)
    for blk in self.blocks:
      x = blk(x)
    if self.global_pool:
      x = x[:, 1:, :].mean(dim=1)
      outcome = self.fc_norm(x)
    else:
      x = self.norm(x)
      outcome = x[:, 0]
    return outcome

  def pooled(self, x):
    return self.forward_features(x)

  def forward(self, x):  # timm 0.3's forward, which MAE's fine-tuning ran on
    return self.head(self.forward_features(x))


CASES = {  # name: (layout, patch, channels, depth, image size, qkv_bias)
    "token": ("token", 4, 1, 2, 28, True),
    "avg_fc_norm": ("avg", 4, 3, 2, 16, True),
    "mae_finetune": ("mae", 8, 3, 6, 24, True),
    "no_qkv_bias": ("token", 14, 3, 1, 28, False),
    "avg_no_qkv_bias_p14_d6": ("avg", 14, 1, 6, 28, False),
    "mae_p8_grey_d1": ("mae", 8, 1, 1, 16, True),
}


def _reference(layout, patch, channels, depth, image_size, qkv_bias, width=48, heads_=3):
  common = dict(img_size=image_size, patch_size=patch, in_chans=channels, num_classes=5,
                embed_dim=width, depth=depth, num_heads=heads_, mlp_ratio=2.0, qkv_bias=qkv_bias)
  if layout == "mae":
    model = MAEFineTuneViT(global_pool=True, norm_layer=functools.partial(torch.nn.LayerNorm,
                                                                          eps=1e-6), **common)
  else:
    model = timm_vit.VisionTransformer(global_pool=layout, **common)
    model.pooled = lambda x: model.forward_head(model.forward_features(x), pre_logits=True)
  model.eval()
  with torch.no_grad():  # every weight random, so no zero-initialised part hides a mistake
    for p in model.parameters():
      p.normal_(0.0, 0.2)
  return model


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_timm_and_mae_vit_parity(case, tmp_path):
  layout, patch, channels, depth, image_size, qkv_bias = CASES[case]
  torch.manual_seed(0)
  reference = _reference(layout, patch, channels, depth, image_size, qkv_bias)
  save_file({k: v.numpy() for k, v in reference.state_dict().items()},
            str(tmp_path / "vit.safetensors"))

  fc_norm = layout in ("avg", "mae")
  params = convert.vit_params_from_torch(convert.load_state_dict(tmp_path / "vit.safetensors"),
                                         patch_size=patch, channels=channels, fc_norm=fc_norm,
                                         qkv_bias=qkv_bias)
  size = vit.Size(width=48, depth=depth, heads=3, mlp_dim=96, patch_size=patch)
  model = heads.Classifier(size, num_classes=5, image_size=image_size, channels=channels,
                           pool="cls" if layout == "token" else "gap", posemb="learn",
                           fc_norm=fc_norm, qkv_bias=qkv_bias, rngs=nnx.Rngs(0))
  graphdef, _ = nnx.split(model)
  ours = nnx.merge(graphdef, params)

  images = np.random.default_rng(0).normal(size=(3, image_size, image_size, channels))
  images = images.astype(np.float32)
  torch_images = torch.from_numpy(images.transpose(0, 3, 1, 2))
  with torch.no_grad():
    expected_logits = reference(torch_images).numpy()
    expected_pooled = reference.pooled(torch_images).numpy()
  logits, aux = ours(images)
  np.testing.assert_allclose(np.asarray(logits), expected_logits, atol=1e-4, rtol=1e-4)
  np.testing.assert_allclose(np.asarray(aux["pre_logits"]), expected_pooled, atol=1e-4, rtol=1e-4)


def _timm_state(**kwargs):
  model = timm_vit.VisionTransformer(img_size=8, patch_size=4, in_chans=1, num_classes=2,
                                     embed_dim=8, depth=1, num_heads=2, **kwargs)
  return {k: v.numpy() for k, v in model.state_dict().items()}


def test_a_layout_that_disagrees_with_the_options_names_the_option():
  with pytest.raises(convert.ConversionError, match="fc_norm=True"):
    convert.vit_params_from_torch(_timm_state(global_pool="avg"), patch_size=4, channels=1)
  with pytest.raises(convert.ConversionError, match="use fc_norm=False"):
    convert.vit_params_from_torch(_timm_state(), patch_size=4, channels=1, fc_norm=True)
  with pytest.raises(convert.ConversionError, match="qkv_bias=False"):
    convert.vit_params_from_torch(_timm_state(qkv_bias=False), patch_size=4, channels=1)
  with pytest.raises(convert.ConversionError, match="convert with qkv_bias=True"):
    convert.vit_params_from_torch(_timm_state(), patch_size=4, channels=1, qkv_bias=False)


def test_mae_decoder_keys_are_dropped_only_when_asked():
  state = _timm_state()
  state.update({"decoder_embed.weight": np.zeros((4, 8)), "mask_token": np.zeros((1, 1, 4))})
  with pytest.raises(convert.ConversionError, match="drop_mae_decoder=True"):
    convert.vit_params_from_torch(state, patch_size=4, channels=1)
  params = convert.vit_params_from_torch(state, patch_size=4, channels=1, drop_mae_decoder=True)
  assert "norm" in params["encoder"]["transformer"]


def test_pth_files_load_with_weights_only(tmp_path):
  torch.save({"model": {"cls_token": torch.ones(1, 1, 4)}}, tmp_path / "a.pth")
  assert convert.load_state_dict(tmp_path / "a.pth")["cls_token"].shape == (1, 1, 4)


def test_unknown_keys_and_wrong_patch_shape_are_named():
  state = _timm_state()
  with pytest.raises(convert.ConversionError, match="'something.else'"):
    convert.vit_params_from_torch(dict(state, **{"something.else": np.zeros(3)}),
                                  patch_size=4, channels=1)
  # A key timm has but the ViT does not (register tokens) is named, not dropped.
  with pytest.raises(convert.ConversionError, match="'reg_token'"):
    convert.vit_params_from_torch(_timm_state(reg_tokens=1), patch_size=4, channels=1)
  with pytest.raises(convert.ConversionError, match="expected \\[width, 3, 4, 4\\]"):
    convert.vit_params_from_torch(state, patch_size=4, channels=3)
