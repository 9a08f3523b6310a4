"""CHCO solve time: 1,000 tasks at once (one vmapped, jitted solve) against one at a time (the
same jitted solver, one call per task) and against a plain-numpy proximal-gradient reference.

    python -m benchmarks.chco_solve [--tasks=1000] [--tol=1e-6] [--max_steps=20000]
        [--reference_tasks=5]

Tasks are synthetic CHCO problems of hub-like size (3-8 classes, 6-14 models, 2-4 candidate
heads per model, 50 pool images per class), drawn with a seed. Batched and sequential times are
medians over `--repeats` after a warm-up (compilation excluded). Each task stops at its own
convergence; the FISTA steps it took are reported (median, 90th percentile, maximum) with the
count of tasks that converged. A vmapped batch runs as long as its slowest task (finished tasks
are held), so the batched time is set by the largest step count per bucket. The reference solver runs
proximal gradient in numpy for as many steps as it needs to reach FISTA's objective to 1e-4
(at most 200,000), on `--reference_tasks` tasks; its per-task time is reported and compared per
task, with how many got there.
"""

import statistics
import time

import numpy as np
from absl import app, flags


if __name__ == "__main__":  # the process the trainer runs in (mll_jax/command.py)
  from mll_jax import command
  command.start()

from benchmarks import report  # noqa: E402
from mll_jax.hub import chco  # noqa: E402

_TASKS = flags.DEFINE_integer("tasks", 1000, "Tasks solved at once.")
_TOL = flags.DEFINE_float("tol", chco.TOLERANCE, "Proximal-gradient residual to stop at.")
_MAX_STEPS = flags.DEFINE_integer("max_steps", chco.MAX_STEPS, "FISTA step cap per task.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed repeats (median).")
_REFERENCE_TASKS = flags.DEFINE_integer("reference_tasks", 5, "Tasks for the numpy reference.")
LAM, MU = 1e-2, 1e-4


def synthetic_problem(rng) -> chco.Problem:
  k, models = int(rng.integers(3, 9)), int(rng.integers(6, 15))
  per_model = rng.integers(2, 5, models)
  groups = np.repeat(np.arange(models), per_model).astype(np.int32)
  y = np.repeat(np.arange(k), 50).astype(np.int32)
  x = rng.normal(-2.0, 0.5, (len(y), len(groups))).astype(np.float32)
  for head in rng.choice(len(groups), size=min(len(groups), 2 * k), replace=False):
    x[y == rng.integers(k), head] += 2.0  # a head that responds to one class
  return chco.Problem(x, y, groups, rng.uniform(0.5, 2.0, models).astype(np.float32), k)


def numpy_reference(problem: chco.Problem, target: float, max_iterations: int = 200000):
  """Plain proximal gradient in numpy until the objective is within 1e-4 of `target`;
  returns (seconds, iterations, whether it got there within `max_iterations`)."""
  x, y, groups, kappa = problem.x.astype(np.float64), problem.y, problem.groups, problem.kappa
  n, p = x.shape
  k = problem.num_classes
  lipschitz = (np.linalg.norm(x, 2) ** 2 + n) / (2 * n) + 2 * MU
  w, b = np.zeros((p, k)), np.zeros(k)
  start = time.perf_counter()
  for iteration in range(1, max_iterations + 1):
    z = x @ w + b
    prob = np.exp(z - z.max(1, keepdims=True))
    prob /= prob.sum(1, keepdims=True)
    prob[np.arange(n), y] -= 1
    w -= (x.T @ prob / n + 2 * MU * w) / lipschitz
    b -= prob.sum(0) / n / lipschitz
    norms = np.sqrt(np.bincount(groups, (w * w).sum(1), minlength=len(kappa)))
    w *= np.maximum(0, 1 - LAM * kappa / lipschitz / np.maximum(norms, 1e-12))[groups][:, None]
    if iteration % 50 == 0 and chco.objective_value(problem, w, b, LAM, MU) <= target + 1e-4:
      return time.perf_counter() - start, iteration, True
  return time.perf_counter() - start, max_iterations, False


def _median_time(fn, repeats):
  fn()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def main(argv):
  del argv
  rng = np.random.default_rng(0)
  problems = [synthetic_problem(rng) for _ in range(_TASKS.value)]
  solve = dict(tol=_TOL.value, max_steps=_MAX_STEPS.value)
  batched = _median_time(lambda: chco.solve_batch(problems, LAM, MU, **solve), _REPEATS.value)
  # One at a time: each task in its own bucket (the warm-up pass compiles every bucket).
  buckets = len({chco.bucket_shape([p]) for p in problems})
  single = _median_time(lambda: [chco.solve(p, LAM, MU, **solve) for p in problems],
                        _REPEATS.value)
  solutions = chco.solve_batch(problems, LAM, MU, **solve)
  steps = np.array([s["iterations"] for s in solutions])
  converged = sum(s["converged"] for s in solutions)
  median_steps, p90_steps, max_steps = (int(np.percentile(steps, q)) for q in (50, 90, 100))
  reference = [numpy_reference(p, s["objective"]) for p, s in
               zip(problems[:_REFERENCE_TASKS.value], solutions)]
  ref_per_task = statistics.median(t for t, _, _ in reference)
  reached = sum(ok for _, _, ok in reference)
  settings = (f"{_TASKS.value} synthetic tasks, FISTA to a residual of {_TOL.value:g} (cap "
              f"{_MAX_STEPS.value}), {buckets} shape buckets")
  print(f"CHCO, {settings}; median of {_REPEATS.value}:")
  print(f"  FISTA steps per task: median {median_steps}, 90th percentile {p90_steps}, max "
        f"{max_steps}; {converged}/{len(solutions)} converged")
  print(f"  batched (vmap per bucket)  {batched:8.3f} s   {batched / _TASKS.value * 1e3:8.3f} "
        "ms/task")
  print(f"  one at a time (jitted)     {single:8.3f} s   {single / _TASKS.value * 1e3:8.3f} "
        "ms/task")
  print(f"  numpy reference            {ref_per_task * 1e3:8.1f} ms/task (median of "
        f"{len(reference)} tasks, {statistics.median(i for _, i, _ in reference):.0f} "
        f"iterations; {reached} of them reached FISTA's objective within 1e-4, the others "
        "stopped at the cap)")
  print(f"  ratio one-at-a-time / batched: {single / batched:.2f}x")
  print(f"  ratio reference / batched (per task): "
        f"{ref_per_task / (batched / _TASKS.value):.0f}x")
  report.emit(
      "CHCO solve", f"{settings}; median of {_REPEATS.value}; reference on {len(reference)} "
      "tasks",
      {"FISTA steps per task (median)": (median_steps, "steps"),
       "FISTA steps per task (90th percentile)": (p90_steps, "steps"),
       "FISTA steps per task (max)": (max_steps, "steps"),
       "converged": (converged, f"of {len(solutions)} tasks"),
       "batched": (batched / _TASKS.value * 1e3, "ms/task"),
       "one at a time": (single / _TASKS.value * 1e3, "ms/task"),
       "numpy reference": (ref_per_task * 1e3, "ms/task"),
       "numpy reference reached FISTA's objective (1e-4)": (reached,
                                                            f"of {len(reference)} tasks")},
      {"one at a time / batched": single / batched,
       "reference / batched (per task)": ref_per_task / (batched / _TASKS.value)})


if __name__ == "__main__":
  app.run(main)
