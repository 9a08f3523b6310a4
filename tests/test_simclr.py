"""SimCLR: NT-Xent against a plain-numpy reference, global-batch negatives, end to end + resume."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from mll_jax import sharding, train
from mll_jax.tasks import simclr
from test_train import _metrics, _read_params


def _reference_nt_xent(z1, z2, t):
  z = np.concatenate([z1, z2]).astype(np.float64)
  z /= np.linalg.norm(z, axis=1, keepdims=True)
  n = len(z1)
  total = 0.0
  for i in range(2 * n):
    j = (i + n) % (2 * n)
    others = [k for k in range(2 * n) if k != i]
    logits = np.array([z[i] @ z[k] / t for k in others])
    total += -(z[i] @ z[j] / t) + np.log(np.exp(logits).sum())
  return total / (2 * n)


def test_nt_xent_matches_a_numpy_reference():
  rng = np.random.default_rng(0)
  z1, z2 = rng.normal(size=(6, 5)), rng.normal(size=(6, 5))
  loss, _ = simclr.nt_xent(jnp.asarray(z1, jnp.float32), jnp.asarray(z2, jnp.float32), 0.3)
  np.testing.assert_allclose(float(loss), _reference_nt_xent(z1, z2, 0.3), rtol=1e-5)


def test_negatives_span_the_whole_global_batch():
  # Sharded over 8 devices, the loss equals the unsharded one: every view sees all negatives.
  rng = np.random.default_rng(1)
  z1, z2 = rng.normal(size=(16, 4)).astype(np.float32), rng.normal(size=(16, 4)).astype(np.float32)
  mesh = sharding.make_mesh((("data", -1),))
  spec = NamedSharding(mesh, P("data"))
  sharded = jax.jit(lambda a, b: simclr.nt_xent(a, b, 0.2)[0])(
      jax.device_put(z1, spec), jax.device_put(z2, spec))
  np.testing.assert_allclose(float(sharded), _reference_nt_xent(z1, z2, 0.2), rtol=1e-5)


@pytest.mark.slow
def test_simclr_end_to_end(make_simclr_config, tmp_path):
  workdir = tmp_path / "run"
  train.run(make_simclr_config(), workdir)
  metrics = _metrics(workdir)
  assert [m["step"] for m in metrics if "fewshot/2shot" in m] == [0, 6]
  assert all(np.isfinite(m["loss"]) for m in metrics if "loss" in m)
  final = _read_params(workdir, 6)
  assert any(k.startswith("projection/") for k in final)


def test_evaluator_needing_a_missing_task_function_is_named(make_simclr_config, tmp_path):
  config = make_simclr_config()
  config.evals.reconstruction = dict(log_steps=0, split="test", num_examples=8, batch_size=8)
  with pytest.raises(ValueError, match="needs the task's `eval_loss`"):
    train.run(config, tmp_path / "run")
  assert not (tmp_path / "run").exists()
