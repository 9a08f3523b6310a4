"""The step profiler (benchmarks/hlo_profile.py) classes XLA's instructions from the optimised
HLO and attributes the traced time to instructions that exist in it."""

import sys

import jax
import jax.numpy as jnp
import numpy as np

from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT))
from benchmarks import hlo_profile  # noqa: E402


def test_the_profile_attributes_time_to_the_programs_own_instructions():
  def step(a, b):
    return jnp.sum(jnp.tanh(a @ b) * 2.0, axis=0) + jnp.exp(a).T.sum(axis=1)

  fn = jax.jit(step)
  a = jnp.asarray(np.random.default_rng(0).normal(size=(256, 256)), jnp.float32)
  classes = hlo_profile.instruction_classes(fn.lower(a, a).compile().as_text())
  assert any(c.startswith("matmul") for c in classes.values()), classes
  times, wall = hlo_profile.traced_op_times(lambda x: fn(x, x), [a], steps=3)
  assert wall > 0 and times and all(ns >= 0 for ns in times.values())
  traced_in_program = [op for op in times if op in classes]
  assert traced_in_program, (times, classes)
  matmul_ops = [op for op in traced_in_program if classes[op].startswith("matmul")]
  assert matmul_ops and sum(times[op] for op in matmul_ops) > 0


def test_a_fusion_is_a_matmul_when_its_computation_holds_a_dot():
  hlo = """HloModule m, entry_computation_layout={()->f32[2]}

%fused_dot (p0: f32[2,2], p1: f32[2,2]) -> f32[2,2] {
  %p0 = f32[2,2]{1,0} parameter(0)
  %p1 = f32[2,2]{1,0} parameter(1)
  ROOT %dot.1 = f32[2,2]{1,0} dot(f32[2,2]{1,0} %p0, f32[2,2]{1,0} %p1), lhs_contracting_dims={1}, rhs_contracting_dims={0}
}

%fused_add (p0: f32[2,2]) -> f32[2,2] {
  %p0 = f32[2,2]{1,0} parameter(0)
  ROOT %add.2 = f32[2,2]{1,0} add(f32[2,2]{1,0} %p0, f32[2,2]{1,0} %p0)
}

ENTRY %main () -> f32[2,2] {
  %c = f32[2,2]{1,0} constant({ {1, 2}, {3, 4} })
  %fusion.1 = f32[2,2]{1,0} fusion(f32[2,2]{1,0} %c, f32[2,2]{1,0} %c), kind=kOutput, calls=%fused_dot
  %copy.3 = f32[2,2]{0,1} copy(f32[2,2]{1,0} %fusion.1)
  ROOT %fusion.2 = f32[2,2]{1,0} fusion(f32[2,2]{0,1} %copy.3), kind=kLoop, calls=%fused_add
}
"""
  classes = hlo_profile.instruction_classes(hlo)
  assert classes["fusion.1"] == "matmul (fused)"
  assert classes["fusion.2"] == "fusion kLoop"
  assert classes["copy.3"] == "copy / transpose"
