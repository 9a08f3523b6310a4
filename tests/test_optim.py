"""Optimiser from config: decay mask, schedule shape, clipping."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from mll_jax import optim


def _optim(**kw):
  base = dict(name="adamw", base_lr=1e-3, base_batch_size=256, b1=0.9, b2=0.95,
              weight_decay=0.05, grad_clip_norm=0.0, min_lr_ratio=0.0)
  base.update(kw)
  return ml_collections.ConfigDict(base)


def test_weight_decay_skips_biases_norms_and_tokens():
  params = {"kernel": jnp.ones((4, 8)), "bias": jnp.ones(8), "scale": jnp.ones(8),
            "cls_token": jnp.ones((1, 1, 8))}
  assert optim.decay_mask(params) == {"kernel": True, "bias": False, "scale": False,
                                      "cls_token": False}


def test_schedule_warms_up_then_decays_with_batch_scaling():
  lr = optim.schedule(_optim(), batch_size=512, total_steps=100, warmup_steps=10)
  peak = 1e-3 * 512 / 256
  assert float(lr(0)) == 0.0
  assert float(lr(10)) == pytest.approx(peak, rel=1e-5)
  assert float(lr(55)) == pytest.approx(peak / 2, rel=0.05)
  assert float(lr(100)) == pytest.approx(0.0, abs=1e-9)


def test_clipping_bounds_the_update():
  tx = optim.make(_optim(grad_clip_norm=1e-3, weight_decay=0.0), 256, 10, 0)
  params = {"w": jnp.zeros((3, 3))}
  state = tx.init(params)
  updates, _ = tx.update({"w": jnp.full((3, 3), 1e6)}, state, params)
  assert np.all(np.isfinite(np.asarray(updates["w"])))


def test_lars_scales_kernel_steps_by_their_norm_but_not_bias_steps():
  # The linear probe's ImageNet optimiser: a kernel's step is lr * |w| / |g| * g (trust ratio),
  # so kernels 10x apart in norm take steps 10x apart; biases take plain momentum-SGD steps.
  tx = optim.make(_optim(name="lars", weight_decay=0.0), 256, 10, 1)
  params = {"small": {"kernel": jnp.full((2, 2), 0.1)}, "large": {"kernel": jnp.full((2, 2), 1.0)},
            "bias": jnp.full(2, 0.1)}
  grads = jax.tree.map(jnp.ones_like, params)
  state = tx.init(params)
  for _ in range(2):  # step 0 has lr 0 (warm-up)
    updates, state = tx.update(grads, state, params)
  small, large = (float(jnp.linalg.norm(updates[k]["kernel"])) for k in ("small", "large"))
  assert large == pytest.approx(10 * small, rel=1e-5)
  lr = float(optim.schedule(_optim(), 256, 10, 1)(1))
  np.testing.assert_allclose(updates["bias"], -lr * np.ones(2), rtol=1e-5)


def test_unknown_optimiser():
  with pytest.raises(ValueError, match="Unknown optimiser 'sgdx'"):
    optim.make(_optim(name="sgdx"), 256, 10, 0)


def test_layer_ids_follow_mae():
  assert optim.layer_id("encoder/patch_embed/kernel", 4) == 0
  assert optim.layer_id("encoder/cls_token", 4) == 0
  assert optim.layer_id("encoder/transformer/blocks/2/fc1/kernel", 4) == 3
  assert optim.layer_id("encoder/transformer/norm/scale", 4) == 5
  assert optim.layer_id("head/kernel", 4) == 5
  assert optim.layer_id("decoder/blocks/0/fc1/kernel", 4) == 5


def test_layer_decay_and_freeze_scale_updates():
  params = {"encoder": {"patch_embed": {"kernel": jnp.ones((2, 2))},
                        "transformer": {"blocks": {0: {"w": jnp.ones((2, 2))},
                                                   1: {"w": jnp.ones((2, 2))}}}},
            "head": {"kernel": jnp.ones((2, 2))}}
  grads = jax.tree.map(jnp.ones_like, params)
  scale = optim.lr_multipliers(ml_collections.ConfigDict({"layer_decay": 0.5, "freeze": ()}))
  out, _ = scale.update(grads, scale.init(params), params)
  assert float(out["head"]["kernel"][0, 0]) == 1.0
  assert float(out["encoder"]["transformer"]["blocks"][1]["w"][0, 0]) == 0.5
  assert float(out["encoder"]["transformer"]["blocks"][0]["w"][0, 0]) == 0.25
  assert float(out["encoder"]["patch_embed"]["kernel"][0, 0]) == 0.125
  frozen = optim.lr_multipliers(ml_collections.ConfigDict({"layer_decay": 1.0,
                                                           "freeze": ("^encoder/",)}))
  out, _ = frozen.update(grads, frozen.init(params), params)
  assert float(jnp.abs(out["encoder"]["patch_embed"]["kernel"]).max()) == 0.0
  assert float(out["head"]["kernel"][0, 0]) == 1.0
