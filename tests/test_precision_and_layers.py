"""Mixed precision (`config.model.dtype`), rematerialisation (`config.model.remat`) and scanned
layers (`config.model.scan_layers`): which arrays are in which dtype, remat and scan equal to
the plain model in loss and gradients, checkpoints converting between the two layouts, the
optimizer and sharding rules on scanned stacks, and the bad-input messages."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from mll_jax import optim, sharding, train
from mll_jax.models import cnn, heads, layer_plan, mae, precision, vit
from test_train import _read_params

IMAGES = jax.random.randint(jax.random.key(0), (4, 28, 28, 1), 0, 256).astype(jnp.uint8)


def _classifier(plan=layer_plan.PLAIN, dtype=jnp.float32):
  return heads.Classifier("mu", num_classes=3, image_size=28, channels=1, drop_path_rate=0.1,
                          head_init_std=0.02, dtype=dtype, layers=plan, rngs=nnx.Rngs(0))


def _pure(model) -> dict:
  return nnx.to_pure_dict(nnx.state(model, nnx.Param))


def _with_params(model, params: dict):
  graphdef, state = nnx.split(model)
  nnx.replace_by_pure_dict(state, params)
  return nnx.merge(graphdef, state)


def _loss(model, key=jax.random.key(3)):
  logits, _ = model(IMAGES, key)
  return jnp.mean(jax.nn.logsumexp(logits, axis=-1) - logits[:, 0])


def _loss_and_grads(model, key=jax.random.key(3)):
  value, grads = nnx.value_and_grad(lambda m: _loss(m, key))(model)
  return value, nnx.to_pure_dict(grads)


def _max_difference(a: dict, b: dict) -> float:
  return max(jax.tree.leaves(jax.tree.map(lambda x, y: float(jnp.abs(x - y).max()), a, b)))


# --- dtype policy ---------------------------------------------------------------------------

def test_bfloat16_computes_in_bfloat16_and_keeps_float32_params_and_outputs():
  model = _classifier(dtype=jnp.bfloat16)
  assert {p.dtype for p in jax.tree.leaves(_pure(model))} == {jnp.dtype(jnp.float32)}
  logits, aux = model(IMAGES)
  assert aux["encoded"].dtype == jnp.bfloat16          # the residual stream
  assert aux["pre_logits"].dtype == jnp.float32        # handed to heads and probes
  assert logits.dtype == jnp.float32                   # handed to the loss
  # The matmuls of a block run in bfloat16: its jaxpr's dot_generals take bfloat16 operands.
  block = model.encoder.transformer.blocks[0]
  jaxpr = jax.make_jaxpr(lambda x: block(x))(jnp.zeros((2, 5, 32), jnp.bfloat16))
  dots = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "dot_general"]
  assert dots and all(v.aval.dtype == jnp.bfloat16 for e in dots for v in e.invars)


@pytest.mark.slow
def test_bfloat16_layernorm_statistics_and_mae_loss_are_float32():
  model = mae.MAE("mu", image_size=28, channels=1, decoder="mu", dtype=jnp.bfloat16,
                  rngs=nnx.Rngs(0))
  loss, aux = model(IMAGES, jax.random.key(1))
  assert loss.dtype == jnp.float32 and aux["pred"].dtype == jnp.float32
  # LayerNorm: statistics in float32 (on CPU the row means are products with a 1/width
  # column, elsewhere reductions: mll_jax.models.layernorm), output in the compute dtype.
  norm = model.encoder.transformer.blocks[0].norm1
  jaxpr = jax.make_jaxpr(lambda x: norm(x))(jnp.ones((2, 3, 32), jnp.bfloat16))
  for primitive in ("dot_general", "reduce_sum"):  # the CPU branches, the others
    statistics = _eqns(jaxpr.jaxpr, primitive)
    assert len(statistics) == 2  # mean and variance
    assert all(e.invars[0].aval.dtype == e.outvars[0].aval.dtype == jnp.float32
               for e in statistics)
  assert jaxpr.out_avals[0].dtype == jnp.bfloat16


def _eqns(jaxpr, primitive: str) -> list:
  """Every `primitive` equation of `jaxpr`, its sub-jaxprs (custom_vjp, pjit, remat, and each
  branch of a cond such as `lax.platform_dependent`'s) included."""
  found = []
  for eqn in jaxpr.eqns:
    found += [eqn] if eqn.primitive.name == primitive else []
    for param in eqn.params.values():
      for inner in param if isinstance(param, tuple) else (param,):
        inner = getattr(inner, "jaxpr", inner)
        found += _eqns(inner, primitive) if hasattr(inner, "eqns") else []
  return found


def _reduce_sums(jaxpr) -> list:
  return _eqns(jaxpr, "reduce_sum")


def test_bfloat16_bias_gradients_are_summed_in_float32():
  # Autodiff sums a bfloat16 output gradient in bfloat16 (9 such sums in this model's
  # gradient, lowered as slow reduce-window trees on CPU); precision.Linear sums in float32.
  graphdef, state = nnx.split(_classifier(dtype=jnp.bfloat16))
  grads = jax.make_jaxpr(jax.grad(lambda s: _loss(nnx.merge(graphdef, s))))(state)
  sums = _reduce_sums(grads.jaxpr)
  assert sums and {e.invars[0].aval.dtype for e in sums} == {jnp.dtype(jnp.float32)}


def test_add_bias_forward_as_flax_and_bias_gradient_the_float32_sum():
  rows = jax.random.normal(jax.random.key(0), (4096, 8), jnp.float32)
  y, bias = rows.astype(jnp.bfloat16), jnp.linspace(-1.0, 1.0, 8)
  assert precision.add_bias(y, bias).dtype == jnp.bfloat16
  np.testing.assert_array_equal(np.asarray(precision.add_bias(y, bias)),
                                np.asarray(y + bias.astype(jnp.bfloat16)))
  weights = jax.random.normal(jax.random.key(1), y.shape).astype(jnp.bfloat16)
  def bias_grad(add):
    return jax.grad(lambda b: jnp.sum((add(y, b) * weights).astype(jnp.float32)))(bias)
  exact = np.asarray(weights, np.float64).sum(0)
  ours, autodiff = bias_grad(precision.add_bias), bias_grad(lambda y, b: y + b.astype(y.dtype))
  assert ours.dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(ours), exact, rtol=1e-4, atol=1e-4)
  # ... where autodiff's bfloat16 sum over 4,096 rows is off by far more.
  assert np.abs(ours - exact).max() * 10 < np.abs(np.asarray(autodiff, np.float64) - exact).max()


def test_float32_linear_is_flax_linear():
  ours = precision.Linear(6, 5, rngs=nnx.Rngs(0))
  theirs = nnx.Linear(6, 5, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(2), (3, 6))
  np.testing.assert_array_equal(np.asarray(ours(x)), np.asarray(theirs(x)))
  assert set(_pure(ours)) == set(_pure(theirs)) == {"kernel", "bias"}  # checkpoints unchanged


@pytest.mark.parametrize("shape", [(3, 6), (2, 4, 6)])
def test_float32_linear_gradients_equal_flax_linear(shape):
  """precision.linear_matmul's own backward (the kernel gradient over 2-D rows) computes what
  autodiff of nnx.Linear does."""
  x = jax.random.normal(jax.random.key(3), shape)
  cotangent = jax.random.normal(jax.random.key(4), shape[:-1] + (5,))

  def grads(layer):
    graphdef, params = nnx.split(layer)
    loss = lambda p, x: jnp.sum(nnx.merge(graphdef, p)(x) * cotangent)
    return jax.tree.leaves(jax.grad(loss, argnums=(0, 1))(params, x))

  for ours, theirs in zip(grads(precision.Linear(6, 5, rngs=nnx.Rngs(0))),
                          grads(nnx.Linear(6, 5, rngs=nnx.Rngs(0)))):
    np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), rtol=1e-6, atol=1e-6)


def test_bfloat16_stays_close_to_float32():
  full, half = _classifier(), _classifier(dtype=jnp.bfloat16)
  half = _with_params(half, _pure(full))
  a, b = full(IMAGES)[0], half(IMAGES)[0]
  assert not np.array_equal(np.asarray(a), np.asarray(b))  # it did compute in bfloat16
  np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=0.05, rtol=0.05)


def _matmul_policy_classifier():
  return precision.with_matmul_policy(_classifier(), "bfloat16_matmul")


def test_bfloat16_matmul_narrows_only_the_linear_operands_forward_and_backward():
  model = _matmul_policy_classifier()
  linears = [m for _, m in nnx.iter_graph(model) if isinstance(m, precision.Linear)]
  assert linears and {m.matmul_dtype for m in linears} == {jnp.bfloat16}
  assert {p.dtype for p in jax.tree.leaves(_pure(model))} == {jnp.dtype(jnp.float32)}
  logits, aux = model(IMAGES)
  assert aux["encoded"].dtype == jnp.float32 and logits.dtype == jnp.float32  # float32 stream
  graphdef, state = nnx.split(model)
  grads = jax.make_jaxpr(jax.grad(lambda s: _loss(nnx.merge(graphdef, s))))(state)
  dots = _eqns(grads.jaxpr, "dot_general")
  narrow = [e for e in dots if {v.aval.dtype for v in e.invars} == {jnp.dtype(jnp.bfloat16)}]
  # Each linear layer: its forward matmul and the backward's two, every one summing in float32;
  # the other matmuls (attention's own products, the head) stay float32 throughout.
  assert len(narrow) == 3 * len(linears)
  assert {e.outvars[0].aval.dtype for e in narrow} == {jnp.dtype(jnp.float32)}
  assert all(v.aval.dtype == jnp.float32 for e in dots if e not in narrow for v in e.invars)


@pytest.mark.slow
def test_bfloat16_matmul_loss_and_gradients_stay_close_to_float32():
  full = _classifier()
  narrow = _with_params(_matmul_policy_classifier(), _pure(full))
  (loss_full, grads_full), (loss_narrow, grads_narrow) = (_loss_and_grads(full),
                                                          _loss_and_grads(narrow))
  assert loss_full != loss_narrow  # it did compute narrower
  np.testing.assert_allclose(float(loss_narrow), float(loss_full), rtol=1e-2)
  for a, b in zip(jax.tree.leaves(grads_full), jax.tree.leaves(grads_narrow)):
    assert float(jnp.linalg.norm(a - b)) <= 0.05 * float(jnp.linalg.norm(a)) + 1e-6


@pytest.mark.parametrize("dtype,narrowed", [("bfloat16_matmul", True), ("float32", False),
                                            ("bfloat16", False)])
def test_the_tasks_models_take_the_matmul_policy_from_the_config(dtype, narrowed):
  from mll_jax.data import sources
  from mll_jax.tasks import mae as mae_task, simclr, supervised
  config = ml_collections.ConfigDict({
      "model": {"variant": "mu", "patch_size": 4, "decoder": "mu", "mask_ratio": 0.75,
                "norm_pix_loss": True, "dtype": dtype, "proj_hidden": 32, "proj_dim": 16,
                "proj_depth": 2},
      "data": {"image_size": 28, "channels": 1}})
  info = sources.DatasetInfo("x", ("a", "b"), (28, 28, 1), {})
  for make in (mae_task.make_model, simclr.make_model, supervised.make_model):
    model = make(config, info, nnx.Rngs(0))
    kinds = {m.matmul_dtype for _, m in nnx.iter_graph(model) if isinstance(m, precision.Linear)}
    assert kinds == ({jnp.bfloat16} if narrowed else {None}), make.__module__


def test_cnn_bfloat16_keeps_float32_batch_statistics():
  model = cnn.CNNClassifier("cnn_mu", num_classes=3, image_size=28, channels=1,
                            dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
  logits, aux = model(IMAGES, jax.random.key(0))
  assert logits.dtype == jnp.float32 and aux["encoded"].dtype == jnp.bfloat16
  stats = jax.tree.leaves(nnx.to_pure_dict(nnx.state(model, nnx.BatchStat)))
  assert stats and {s.dtype for s in stats} == {jnp.dtype(jnp.float32)}


def test_auto_dtype_is_per_backend_and_unknown_names_list_the_valid_ones():
  assert precision.dtype_name("auto", "tpu") == "bfloat16"
  assert precision.dtype_name("auto", "gpu") == "bfloat16"
  assert precision.dtype_name("auto", "cpu") == "bfloat16_matmul"  # measured faster, at parity
  assert precision.dtype_name("float32", "tpu") == "float32"
  with pytest.raises(ValueError, match="must be one of auto, float32, bfloat16, bfloat16_matmul; got 'fp16'"):
    precision.compute_dtype("fp16")


# --- remat and scan -------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("remat", ["full", "dots", "dots_no_batch"])
def test_remat_equals_the_plain_model_in_loss_and_gradients(remat):
  plain_loss, plain_grads = _loss_and_grads(_classifier())
  loss, grads = _loss_and_grads(_classifier(layer_plan.LayerPlan(remat=remat)))
  assert float(loss) == pytest.approx(float(plain_loss), abs=1e-6)
  assert _max_difference(grads, plain_grads) < 1e-6


@pytest.mark.slow
@pytest.mark.parametrize("remat", ["none", "dots_no_batch"])
def test_scanned_layers_equal_the_plain_model_in_loss_and_gradients(remat):
  plain = _classifier()
  scanned = _classifier(layer_plan.LayerPlan(remat=remat, scan=True))
  fc1 = _pure(scanned)["encoder"]["transformer"]["blocks"]["fc1"]["kernel"]
  assert fc1.shape == (2, 32, 64)  # one stack with a leading layer axis
  scanned = _with_params(scanned, layer_plan.stack_blocks(_pure(plain)))
  for key in (None, jax.random.key(5)):  # evaluation, and training with drop path
    np.testing.assert_allclose(np.asarray(scanned(IMAGES, key)[0]),
                               np.asarray(plain(IMAGES, key)[0]), atol=1e-5)
  plain_loss, plain_grads = _loss_and_grads(plain)
  loss, grads = _loss_and_grads(scanned)
  assert float(loss) == pytest.approx(float(plain_loss), abs=1e-5)
  assert _max_difference(layer_plan.unstack_blocks(grads), plain_grads) < 1e-5


def test_scanned_layers_read_the_last_blocks_as_the_loop_does():
  make = lambda plan: heads.Classifier("mu", num_classes=3, image_size=28, channels=1,
                                       read_blocks=2, layers=plan, rngs=nnx.Rngs(0))
  plain = make(layer_plan.PLAIN)
  scanned = _with_params(make(layer_plan.LayerPlan(scan=True)),
                         layer_plan.stack_blocks(_pure(plain)))
  features, plain_features = scanned(IMAGES)[1]["pre_logits"], plain(IMAGES)[1]["pre_logits"]
  assert features.shape == (4, 64)
  np.testing.assert_allclose(np.asarray(features), np.asarray(plain_features), atol=1e-5)


def test_stack_and_unstack_are_inverse():
  params = _pure(_classifier())
  stacked = layer_plan.stack_blocks(params)
  assert "0" not in stacked["encoder"]["transformer"]["blocks"]
  back = layer_plan.unstack_blocks(stacked)
  assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), back, params))


def test_unknown_remat_policy_lists_the_valid_ones():
  with pytest.raises(ValueError, match="remat must be one of none, full, dots, dots_no_batch; "
                                       "got 'some'"):
    layer_plan.LayerPlan(remat="some")


def test_a_cnn_refuses_remat_and_scan(make_finetune_config):
  from mll_jax.tasks import supervised
  config = make_finetune_config(**{"model.family": "cnn", "model.variant": "cnn_mu"})
  config.model.scan_layers = True
  with pytest.raises(ValueError, match="transformer options"):
    supervised.make_model(config, None, nnx.Rngs(0))


# --- optimizer and sharding on a scanned stack -----------------------------------------------

def test_weight_decay_mask_ignores_the_layer_axis_of_a_scanned_stack():
  plain = optim.decay_mask(_pure(_classifier()))
  scanned = optim.decay_mask(_pure(_classifier(layer_plan.LayerPlan(scan=True))))
  # Every layer of a leaf agrees, so the stacked plain mask reduces to one bool per leaf.
  stacked_plain = jax.tree.map(lambda m: bool(np.all(m)), layer_plan.stack_blocks(plain))
  assert stacked_plain == scanned  # biases and norms exempt in both layouts
  assert scanned["encoder"]["transformer"]["blocks"]["fc1"] == {"kernel": True, "bias": False}


def test_layer_decay_scales_each_layer_of_a_scanned_stack_as_its_block():
  scale = optim.lr_multipliers(ml_collections.ConfigDict({"layer_decay": 0.5}))
  plain_params = _pure(_classifier())
  ones = lambda tree: jax.tree.map(jnp.ones_like, tree)
  plain, _ = scale.update(ones(plain_params), scale.init(plain_params))
  stacked_params = layer_plan.stack_blocks(plain_params)
  scanned, _ = scale.update(ones(stacked_params), scale.init(stacked_params))
  assert _max_difference(layer_plan.unstack_blocks(scanned), plain) == 0.0
  assert float(plain["encoder"]["transformer"]["blocks"][0]["fc1"]["kernel"][0, 0]) == 0.25


def test_fsdp_never_shards_the_layer_axis():
  mesh = sharding.make_mesh((("data", 1), ("fsdp", 8)))
  tree = {"params": {"encoder": {"transformer": {"blocks": {
      "fc1": {"kernel": jax.ShapeDtypeStruct((16, 8, 4), jnp.float32)}}}}}}
  spec = sharding.tree_shardings(tree, ((".*", "fsdp"),), mesh)
  assert spec["params"]["encoder"]["transformer"]["blocks"]["fc1"]["kernel"].spec == \
      jax.sharding.PartitionSpec(None, "fsdp", None)


@pytest.mark.slow
def test_scanned_layers_keep_activations_batch_sharded_under_fsdp(make_config):
  # Without the constraint in layer_plan._batch_sharded the scanned FSDP step needed twice the
  # unscanned one's temporaries here (12x for ViT-B/16 on a v5p-128 slice).
  temps = {}
  for scan in (False, True):
    config = make_config(batch_size=64, **{"mesh": (("data", 1), ("fsdp", 8)),
                                           "model.scan_layers": scan})
    temps[scan] = train.compile_only(config).temp_bytes
  assert temps[True] < 1.3 * temps[False], temps


# --- end to end: config keys, a checkpoint read across layouts -------------------------------

@pytest.mark.slow
def test_finetune_scanned_bfloat16_with_remat_from_an_unscanned_mae_run(make_config,
                                                                       make_finetune_config,
                                                                       tmp_path):
  train.run(make_config(total_steps=3), tmp_path / "mae")
  config = make_finetune_config(init_from=str(tmp_path / "mae"), total_steps=2, warmup_steps=1,
                                log_steps=1,
                                **{"optim.base_lr": 0.0, "model.scan_layers": True,
                                   "model.remat": "full", "model.dtype": "bfloat16"})
  train.run(config, tmp_path / "ft")
  tuned, pretrained = _read_params(tmp_path / "ft", 2), _read_params(tmp_path / "mae", 3)
  # The scanned stack holds the MAE's blocks, layer i at index i.
  np.testing.assert_array_equal(tuned["encoder/transformer/blocks/fc1/kernel"][1],
                                pretrained["encoder/transformer/blocks/1/fc1/kernel"])
  np.testing.assert_array_equal(tuned["encoder/patch_embed/kernel"],
                                pretrained["encoder/patch_embed/kernel"])
  assert all(v.dtype == np.float32 for v in tuned.values())


def test_bad_dtype_in_the_config_fails_before_anything_is_written(make_finetune_config,
                                                                 tmp_path):
  config = make_finetune_config(**{"model.dtype": "half"})
  with pytest.raises(ValueError, match="config.model.dtype must be one of"):
    train.run(config, tmp_path / "run")
  assert not (tmp_path / "run" / "checkpoints").exists()


def test_attention_kernel_by_config_and_unknown_kernels_listed():
  auto, xla = _classifier(), _classifier(layer_plan.LayerPlan(attention="xla"))
  xla = _with_params(xla, _pure(auto))
  np.testing.assert_allclose(np.asarray(xla(IMAGES)[0]), np.asarray(auto(IMAGES)[0]), atol=1e-6)
  assert xla.encoder.transformer.blocks[0].attn.implementation == "xla"
  with pytest.raises(ValueError, match="attention must be one of auto, xla, cudnn, einsum; "
                                       "got 'flash'"):
    layer_plan.LayerPlan(attention="flash")
