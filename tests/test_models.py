"""ViT / MAE semantics: positions, masking, loss on masked patches only, variants, sizes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mll_jax.models import mae, posembed, vit


def test_sincos_table_shape_and_cls_row():
  table = posembed.sincos_2d(7, 7, 32, with_cls=True)
  assert table.shape == (50, 32)
  np.testing.assert_array_equal(table[0], 0.0)
  # Distinct positions get distinct embeddings; values are sines and cosines.
  assert len({tuple(np.round(r, 6)) for r in table[1:]}) == 49
  assert np.abs(table).max() <= 1.0


def test_random_masking_keeps_a_quarter_and_restores_order():
  tokens = jnp.arange(2 * 16 * 3, dtype=jnp.float32).reshape(2, 16, 3)
  kept, mask, ids_restore, _ = mae.random_masking(tokens, 0.75, jax.random.key(0))
  assert kept.shape == (2, 4, 3)
  np.testing.assert_array_equal(mask.sum(axis=1), [12, 12])
  for b in range(2):
    visible = np.flatnonzero(np.asarray(mask[b]) == 0)
    # The kept tokens are exactly the unmasked ones.
    assert sorted(np.asarray(kept[b, :, 0]).tolist()) == sorted(np.asarray(tokens[b, visible, 0]).tolist())
    # ids_restore is a permutation.
    assert sorted(np.asarray(ids_restore[b]).tolist()) == list(range(16))
  # Different images get different masks.
  assert not np.array_equal(mask[0], mask[1])


def test_loss_counts_masked_patches_only():
  target = jax.random.normal(jax.random.key(0), (2, 8, 5))
  mask = jnp.array([[1, 1, 0, 0, 1, 0, 0, 0]] * 2, jnp.float32)
  pred = jnp.zeros_like(target)
  base = mae.reconstruction_loss(pred, target, mask, norm_pix_loss=False)
  moved_visible = pred.at[:, 2].set(100.0)  # patch 2 is visible: must not count
  assert float(mae.reconstruction_loss(moved_visible, target, mask, False)) == pytest.approx(float(base))
  moved_masked = pred.at[:, 0].set(100.0)
  assert float(mae.reconstruction_loss(moved_masked, target, mask, False)) > float(base) + 100


def _mae_forward_loss(imgs, pred, mask, patch_size, norm_pix_loss=True):
  """facebookresearch/mae `models_mae.MaskedAutoencoderViT.forward_loss` and its `patchify`,
  transcribed in torch (the channel count generalised from 3): imgs [N, C, H, W]."""
  import torch
  n, c, h, _ = imgs.shape
  p = patch_size
  g = h // p
  x = imgs.reshape(n, c, g, p, g, p)
  x = torch.einsum("nchpwq->nhwpqc", x)
  target = x.reshape(n, g * g, p ** 2 * c)
  if norm_pix_loss:
    mean = target.mean(dim=-1, keepdim=True)
    var = target.var(dim=-1, keepdim=True)
    target = (target - mean) / (var + 1.e-6) ** .5
  loss = (pred - target) ** 2
  loss = loss.mean(dim=-1)
  return (loss * mask).sum() / mask.sum()


def test_norm_pix_loss_uses_the_unbiased_variance_like_mae():
  # The example: a patch arange(16), prediction 0, mask 1 -> 0.9375 (= 15/16) in MAE.
  target = jnp.arange(16, dtype=jnp.float32)[None, None]
  loss = mae.reconstruction_loss(jnp.zeros_like(target), target, jnp.ones((1, 1)), True)
  assert float(loss) == pytest.approx(0.9375, rel=1e-5)


@pytest.mark.parametrize("channels,patch_size,norm_pix_loss",
                         [(1, 4, True), (3, 4, True), (3, 8, True), (1, 4, False)])
def test_mae_loss_matches_the_reference_forward_loss(channels, patch_size, norm_pix_loss):
  import torch
  rng = np.random.default_rng(channels + patch_size)
  size = 16
  images = rng.uniform(-1, 1, (2, size, size, channels)).astype(np.float32)
  patches = (size // patch_size) ** 2
  pred = rng.normal(size=(2, patches, patch_size ** 2 * channels)).astype(np.float32)
  mask = (rng.uniform(size=(2, patches)) < 0.75).astype(np.float32)
  expected = _mae_forward_loss(torch.from_numpy(images.transpose(0, 3, 1, 2)),
                               torch.from_numpy(pred), torch.from_numpy(mask), patch_size,
                               norm_pix_loss)
  target = vit.patchify(jnp.asarray(images), patch_size)
  got = mae.reconstruction_loss(jnp.asarray(pred), target, jnp.asarray(mask), norm_pix_loss)
  assert float(got) == pytest.approx(float(expected), rel=1e-5)


@pytest.mark.slow
def test_mae_forward_shapes_on_grey_and_rgb():
  for size, channels in ((28, 1), (32, 3)):
    model = mae.MAE("mu", image_size=size, channels=channels, decoder="mu", rngs=nnx.Rngs(0))
    images = jnp.zeros((2, size, size, channels), jnp.uint8)
    loss, aux = model(images, jax.random.key(0))
    patches = (size // 4) ** 2
    assert aux["pred"].shape == (2, patches, 16 * channels)
    assert np.isfinite(float(loss))


def test_vit_returns_named_representations():
  model = vit.ViT("mu", image_size=28, channels=1, rngs=nnx.Rngs(0))
  out, aux = model(jnp.ones((3, 28, 28, 1)))
  assert out.shape == (3, 32)
  assert aux["encoded"].shape == (3, 50, 32)
  np.testing.assert_allclose(aux["pre_logits"], aux["encoded"][:, 1:].mean(1), rtol=1e-6)


def test_token_pool_keeps_every_patch_token_for_the_probe():
  from mll_jax.models import heads
  model = vit.ViT("mu", image_size=28, channels=1, pool="tokens", rngs=nnx.Rngs(0))
  images = jax.random.uniform(jax.random.key(1), (3, 28, 28, 1))
  out, aux = model(images)
  assert model.features == 32 * 49 and out.shape == (3, 32 * 49)
  np.testing.assert_allclose(out.reshape(3, 49, 32), aux["encoded"][:, 1:], rtol=1e-6)
  probe = heads.Classifier("mu", num_classes=5, image_size=28, channels=1, pool="tokens",
                           head_norm="batchnorm", frozen_trunk=True, rngs=nnx.Rngs(0))
  assert probe.head.kernel.shape == (32 * 49, 5)
  assert probe(images)[0].shape == (3, 5)
  with pytest.raises(ValueError, match="pool must be one of gap, cls, tokens, got 'max'"):
    vit.ViT("mu", image_size=28, channels=1, pool="max", rngs=nnx.Rngs(0))


def test_read_blocks_concatenates_the_last_blocks_read_outs_through_the_final_norm():
  images = jax.random.uniform(jax.random.key(1), (3, 28, 28, 1))
  last = vit.ViT("mu", image_size=28, channels=1, rngs=nnx.Rngs(0))
  both = vit.ViT("mu", image_size=28, channels=1, read_blocks=2, rngs=nnx.Rngs(0))  # same params
  out, aux = both(images)
  assert both.features == 2 * 32 and out.shape == (3, 64)
  last_out, last_aux = last(images)
  np.testing.assert_allclose(out[:, 32:], last_out, rtol=1e-6)  # newest block last
  first_block = last.transformer.blocks[0](last.prepend_cls(last.embed_patches(images)))
  np.testing.assert_allclose(out[:, :32], last.transformer.norm(first_block)[:, 1:].mean(1),
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(aux["encoded"], last_aux["encoded"], rtol=1e-6)
  cls = vit.ViT("mu", image_size=28, channels=1, pool="cls", read_blocks=2, rngs=nnx.Rngs(0))
  np.testing.assert_allclose(cls(images)[0][:, 32:], last_aux["encoded"][:, 0], rtol=1e-6)
  for bad in (0, 3, 1.5):
    with pytest.raises(ValueError, match=r"read_blocks must be a whole number of blocks from 1 "
                                         rf"to the encoder's depth \(2\); got {bad}"):
      vit.ViT("mu", image_size=28, channels=1, read_blocks=bad, rngs=nnx.Rngs(0))


def test_image_size_not_divisible_by_patch_is_a_clear_error():
  with pytest.raises(ValueError, match="not divisible by the patch size 4"):
    mae.MAE("mu", image_size=30, channels=1, decoder="mu", rngs=nnx.Rngs(0))


def test_unknown_variant_lists_known_ones():
  with pytest.raises(ValueError, match="known variants: mu, mini, tiny"):
    vit.encoder_size("huge")


@pytest.mark.parametrize("variant,millions", [("S/16", 21.7), ("B/16", 85.8), ("L/16", 303.3)])
def test_standard_sizes_have_the_published_parameter_counts(variant, millions):
  model = nnx.eval_shape(lambda: vit.ViT(variant, image_size=224, channels=3, rngs=nnx.Rngs(0)))
  count = sum(x.size for x in jax.tree.leaves(nnx.state(model)))
  assert count / 1e6 == pytest.approx(millions, rel=0.01)
