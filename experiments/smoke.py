"""The `--quick` mode shared by the experiment scripts: a config shrunk to a few tiny steps with
small evaluations, so the tests can run a whole study end to end in seconds."""

QUICK_RUN = {"batch_size": 16, "total_steps": 3, "warmup_steps": 1, "log_steps": 3,
             "checkpoint.every_steps": 3}
_SMALL_EVALS = (("num_examples", 64), ("num_train_examples", 200), ("num_test_examples", 64),
                ("batch_size", 32), ("seeds", 1))


def shrink(config) -> dict:
  """Shrinks `config`'s evaluators in place; returns the overrides of a 3-step run."""
  for evaluator in config.evals.values():
    for key, value in _SMALL_EVALS:
      if key in evaluator:
        evaluator[key] = value
  if "fewshot" in config.evals:
    config.evals.fewshot.shots = (2,)
  return dict(QUICK_RUN)
