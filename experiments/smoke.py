"""The `--quick` mode shared by the experiment scripts: a config shrunk to a few tiny steps with
small evaluations, so the tests can run a whole study end to end in seconds."""

QUICK_RUN = {"batch_size": 16, "total_steps": 3, "warmup_steps": 1, "log_steps": 3,
             "checkpoint.every_steps": 3}
# Each model's test-sized stand-in of the same family (a ViT's is `mu`).
QUICK_MODEL = {"mini": "mu", "tiny": "mu", "resnet18": "resnet_mu", "cnn_s": "cnn_mu"}
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


def model(name: str) -> str:
  """The quick stand-in for model `name`: `mu` for a ViT, a CNN's or ResNet's smallest."""
  return QUICK_MODEL.get(name, "mu")
