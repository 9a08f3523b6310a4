"""The step-parts diagnosis (benchmarks/step_parts.py): the linear layers it times are the
model's, its stand-ins are put back, and it runs end to end."""

import subprocess
import sys

from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT))
from benchmarks import step_parts  # noqa: E402
from mll_jax import config_files  # noqa: E402
from mll_jax.models import attention, gelu, layernorm, precision  # noqa: E402


def test_the_timed_products_have_the_mae_steps_shapes():
  config = config_files.load(REPO_ROOT / "configs" / "mae.py").get_config(None)
  shapes = step_parts.linear_shapes(config)
  # Patch embedding, 6 encoder blocks of 4, decoder embedding, 2 decoder blocks of 4, prediction.
  assert len(shapes) == 1 + 6 * 4 + 1 + 2 * 4 + 1
  assert shapes[0] == (128 * 49, 16, 192)         # every patch is embedded, then masked
  assert shapes[1] == (128 * 13, 192, 576)        # 12 visible patches and the cls token
  assert shapes[26] == (128 * 50, 128, 384)       # the decoder sees every patch
  assert shapes[29] == (128 * 50, 512, 128)
  assert shapes[-1] == (128 * 50, 128, 16)


def test_stand_ins_are_swapped_in_and_put_back():
  originals = (attention.multi_head_attention, layernorm.LayerNorm.__call__, gelu.gelu,
               precision.Linear.__call__)
  try:
    with step_parts.stand_ins(list(step_parts.STAND_INS)):
      assert gelu.gelu is not originals[2]
      raise RuntimeError("a failure inside the swap")
  except RuntimeError:
    pass
  assert (attention.multi_head_attention, layernorm.LayerNorm.__call__, gelu.gelu,
          precision.Linear.__call__) == originals


def test_the_diagnosis_runs_and_reports_every_variant(subprocess_env):
  proc = subprocess.run([sys.executable, "benchmarks/step_parts.py", "--config=configs/mae.py:mu",
                         "--config.batch_size=16", "--repeats=1", "--steps=1"],
                        cwd=REPO_ROOT, env=subprocess_env, capture_output=True, text=True,
                        timeout=600)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  for variant in ("matmuls jax, one program", "matmuls PyTorch", "step jax, whole",
                  "step jax, no LayerNorm", "step jax, none of the four",
                  "step PyTorch, no attention products"):
    assert f"| {variant} | " in proc.stdout, proc.stdout
