"""The step-parts diagnosis (benchmarks/step_parts.py): the linear layers it times are the
model's, its stand-ins are put back, and it runs end to end. Each check runs in a process of
its own: the script's command-line flags (mae_step's --config) clash with the trainer's, which
the test session has imported."""

import subprocess
import sys
import textwrap

from conftest import REPO_ROOT

_CHECKS = textwrap.dedent("""
    from benchmarks import step_parts
    from mll_jax import config_files
    from mll_jax.models import attention, gelu, layernorm, precision

    config = config_files.load("configs/mae.py").get_config(None)
    shapes = step_parts.linear_shapes(config)
    # Patch embedding, 6 encoder blocks of 4, decoder embedding, 2 decoder blocks of 4, and
    # the prediction.
    assert len(shapes) == 1 + 6 * 4 + 1 + 2 * 4 + 1, shapes
    assert shapes[0] == (128 * 49, 16, 192), shapes    # every patch is embedded, then masked
    assert shapes[1] == (128 * 13, 192, 576), shapes   # 12 visible patches and the cls token
    assert shapes[26] == (128 * 50, 128, 384), shapes  # the decoder sees every patch
    assert shapes[29] == (128 * 50, 512, 128), shapes
    assert shapes[-1] == (128 * 50, 128, 16), shapes

    def current():
      return (attention.multi_head_attention, layernorm.LayerNorm.__call__, gelu.gelu,
              precision.Linear.__call__)

    originals = current()
    try:
      with step_parts.stand_ins(list(step_parts.STAND_INS)):
        assert all(now is not before for now, before in zip(current(), originals))
        raise RuntimeError("a failure inside the swap")
    except RuntimeError:
      pass
    assert current() == originals
    print("checks passed")
""")


def _run(args, subprocess_env):
  proc = subprocess.run([sys.executable, *args], cwd=REPO_ROOT, env=subprocess_env,
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  return proc.stdout


def test_the_timed_products_have_the_steps_shapes_and_stand_ins_are_put_back(subprocess_env):
  assert "checks passed" in _run(["-c", _CHECKS], subprocess_env)


def test_the_diagnosis_runs_and_reports_every_variant(subprocess_env):
  out = _run(["benchmarks/step_parts.py", "--config=configs/mae.py:mu", "--config.batch_size=16",
              "--repeats=1", "--steps=1"], subprocess_env)
  assert "15 linear layers, 45 products" in out, out  # mu: 2 encoder blocks, 1 decoder block
  for variant in ("matmuls jax, one program", "matmuls PyTorch", "step jax, whole",
                  "step jax, no LayerNorm", "step jax, none of the four",
                  "step PyTorch, no attention products"):
    assert f"| {variant} | " in out, out
