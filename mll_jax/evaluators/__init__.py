"""Evaluators built from `config.evals.<name>`; each runs at step 0, every `log_steps` (or
`log_points` times, evenly spaced, whatever the run's length), and at the end.

An evaluator is built once per run (it loads its data and jits its function) and called with
the current model variables (`steps.variables(state)`); it returns a dict of metrics named
`<evaluator>/<metric>`.
"""

import importlib

EVALUATORS = {"reconstruction": "mll_jax.evaluators.reconstruction",
              "classification": "mll_jax.evaluators.classification",
              "fewshot": "mll_jax.evaluators.fewshot"}


def build_all(evals_config, context) -> list:
  """One evaluator per entry of `config.evals`; `context` carries data, task and mesh."""
  evaluators = []
  for name, cfg in evals_config.items():
    kind = cfg.get("kind", name)
    if kind not in EVALUATORS:
      raise ValueError(f"config.evals.{name}: unknown evaluator {kind!r}; known: "
                       f"{', '.join(EVALUATORS)}.")
    points = cfg.get("log_points", 0)
    if points < 0 or int(points) != points:
      raise ValueError(f"config.evals.{name}.log_points={points} must be a whole number >= 0: "
                       "how many times to evaluate over the run (0: every log_steps).")
    module = importlib.import_module(EVALUATORS[kind])
    evaluator = module.Evaluator(name, cfg, context)
    evaluator.log_points = int(points)
    evaluators.append(evaluator)
  return evaluators


def due(evaluator, step: int, total_steps: int) -> bool:
  """Runs at step 0, every `log_steps` (every `total_steps // log_points` when the evaluator
  has `log_points`: a learning curve of as many points whatever the budget), and at the last
  step."""
  every = evaluator.log_steps
  points = getattr(evaluator, "log_points", 0)
  if points:
    every = max(total_steps // points, 1)
  return step == 0 or step == total_steps or (every > 0 and step % every == 0)
