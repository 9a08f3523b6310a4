"""Meshes, regex placement, and the same steps on 1 device and on an 8-device data x fsdp mesh."""

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from mll_jax import optim, sharding, steps, tasks
from mll_jax.data import pipeline, sources, transforms


def test_mesh_resolves_minus_one():
  assert sharding.mesh_shape([("data", -1), ("fsdp", 2)], 8) == {"data": 4, "fsdp": 2}


@pytest.mark.parametrize("mesh,message", [
    ([("data", 4), ("fsdp", 4)], "needs 16 devices but only 8 are present"),
    ([("data", -1), ("fsdp", 3)], "divisible by 3"),
    ([("data", -1), ("fsdp", -1)], "at most one axis"),
    ([("data", 2), ("data", 4)], "repeats an axis name"),
])
def test_bad_meshes_are_named(mesh, message):
  with pytest.raises(ValueError, match=message):
    sharding.mesh_shape(mesh, 8)


def test_rules_shard_the_largest_divisible_dimension():
  mesh = sharding.make_mesh([("data", 2), ("fsdp", 4)])
  tree = {"a": {"kernel": jax.ShapeDtypeStruct((6, 32), np.float32),
                "bias": jax.ShapeDtypeStruct((3,), np.float32)},
          "b": {"kernel": jax.ShapeDtypeStruct((8, 16), np.float32)}}
  shardings = sharding.tree_shardings(tree, [("^b/", "replicate"), (".*", "fsdp")], mesh)
  assert shardings["a"]["kernel"].spec == P(None, "fsdp")
  assert shardings["a"]["bias"].spec == P()   # 3 is not divisible by 4
  assert shardings["b"]["kernel"].spec == P()  # first matching rule wins


def test_rule_naming_an_unknown_axis():
  mesh = sharding.make_mesh([("data", -1)])
  with pytest.raises(ValueError, match="not in the mesh"):
    sharding.tree_shardings({"w": jax.ShapeDtypeStruct((8, 8), np.float32)},
                            [(".*", "model")], mesh)


def _three_steps(config, devices):
  task = tasks.get("mae")
  mesh = sharding.make_mesh(config.mesh, devices)
  builder = sources.get_builder(config.data.name, config.data.data_dir)
  info = sources.info(builder)
  tx = optim.make(config.optim, config.batch_size, 10, 2)
  compiled = steps.build(task, config, info, tx, mesh)
  source = sources.data_source(builder, "train")
  ds = pipeline.train_dataset(source, local_batch_size=config.batch_size, seed=0,
                              transform=transforms.TrainTransform(28, 1))
  it = pipeline.train_iterator(ds)
  state = compiled.init()
  losses = []
  for _ in range(3):
    state, metrics = compiled.train_step(state, sharding.global_batch(next(it), compiled.batch_sharding))
    losses.append(float(metrics["loss"]))
  return losses, state


# float32 agrees to float32 rounding. The CPU default (bfloat16_matmul) rounds each matmul's
# operands to bfloat16, so the meshes' different summation orders in the first steps' gradients
# can round a later operand the other way: measured 1.6e-5 relative in the third loss.
@pytest.mark.slow
@pytest.mark.parametrize("dtype,rtol,atol", [("float32", 1e-5, 2e-5), ("auto", 1e-4, 1e-4)])
def test_one_device_and_eight_device_mesh_agree(make_config, dtype, rtol, atol):
  single = make_config(mesh=(("data", 1), ("fsdp", 1)))
  single.model.dtype = dtype
  losses_1, state_1 = _three_steps(single, jax.devices()[:1])
  multi = make_config(mesh=(("data", 2), ("fsdp", 4)))
  multi.model.dtype = dtype
  losses_8, state_8 = _three_steps(multi, jax.devices())
  np.testing.assert_allclose(losses_8, losses_1, rtol=rtol)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=atol),
               state_1["params"], state_8["params"])

  # Parameters really are split over the fsdp axis on the 8-device mesh.
  kernel = state_8["params"]["encoder"]["transformer"]["blocks"][0]["fc1"]["kernel"]
  assert kernel.shape == (32, 64)
  assert "fsdp" in tuple(kernel.sharding.spec)
  assert kernel.addressable_shards[0].data.shape == (32, 16)
  opt_leaves = jax.tree_util.tree_flatten_with_path(state_8["opt_state"])[0]
  adam_mu = [leaf for path, leaf in opt_leaves if sharding.path_to_str(path).endswith(
      "mu/encoder/transformer/blocks/0/fc1/kernel")]
  assert len(adam_mu) == 1 and adam_mu[0].sharding == kernel.sharding
  sharded = [leaf for leaf in jax.tree.leaves(state_8["params"])
             if any(axis is not None for axis in leaf.sharding.spec)]
  assert len(sharded) > len(jax.tree.leaves(state_8["params"])) // 2
