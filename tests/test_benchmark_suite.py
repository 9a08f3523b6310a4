"""The benchmark suite end to end in its smoke mode: every benchmark runs and reports its
figures and ratios into one markdown report; a failing benchmark is reported, not fatal."""

import subprocess
import sys

from conftest import REPO_ROOT


def test_quick_suite_reports_every_benchmark(tmp_path, subprocess_env):
  out = tmp_path / "report.md"
  proc = subprocess.run([sys.executable, "benchmarks/run.py", "--quick", f"--out={out}"],
                        cwd=REPO_ROOT, env=subprocess_env, capture_output=True, text=True,
                        timeout=1200)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  report = out.read_text()
  for name in ("mae_step", "gelu_step", "attention_step", "layernorm_step", "input_pipeline",
               "labeling_throughput", "chco_solve", "reuse_throughput", "xla_cpu_flags"):
    assert f"`benchmarks/{name}.py`" in report, report
  assert "## Fused reuse, mixed architectures (`benchmarks/reuse_throughput.py`)" in report
  # The MAE step once on mll_jax's default allocator and once on glibc's (PyTorch's default;
  # the smoke run times mll_jax's side only there).
  assert "## MAE train step and encoder inference, system allocator (`benchmarks/mae_step.py`)" \
      in report and "allocator system;" in report, report
  for ratio in ("train mll_jax float32 / PyTorch float32",
                "train mll_jax bfloat16 / PyTorch float32",
                "train mll_jax bfloat16 / PyTorch bf16 autocast",
                "inference mll_jax float32 / PyTorch float32",
                "train bfloat16 / float32 (mll_jax)", "pipeline / step", "label_model / jit_loop",
                "one at a time / batched", "reference / batched (per task)",
                "fused (vmap) / sequential", "fused (map) / sequential", "vec512 / default",
                "train float32, erf form / erfc form", "infer float32, einsum / xla",
                "train float32, matmul form / flax",
                "train mll_jax float32 / PyTorch float32, lowest round",
                "inference mll_jax bfloat16_matmul / PyTorch float32, highest round"):
    assert f"| ratio {ratio} | **" in report, (ratio, report)
  for loop in ("vmap", "map", "unroll"):  # start-up cost beside the fused loops' throughput
    assert f"| compile fused ({loop}) | " in report, (loop, report)
  assert "| compile sequential | " in report
  assert "## Machine" in report and "jax " in report and "Failed" not in report


def test_a_failing_benchmark_is_reported_and_the_suite_exits_nonzero(tmp_path, subprocess_env):
  out = tmp_path / "report.md"
  env = dict(subprocess_env, TFDS_DATA_DIR=str(tmp_path / "no_such" / "file"))
  (tmp_path / "no_such").write_text("a file where the data folder should be")
  proc = subprocess.run([sys.executable, "benchmarks/run.py", "--quick",
                         "--only=input_pipeline,chco_solve", f"--out={out}"], cwd=REPO_ROOT,
                        env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 1, proc.stdout + proc.stderr
  report = out.read_text()
  assert "**Failed**" in report and "| ratio one at a time / batched |" in report, report
