"""Closed-form few-shot ridge regression on frozen features (big_vision's fewshot_lsr).

For `k` shots per class: features are whitened with the training shots' statistics, a bias
column added, targets are {-1, 1} one-hot, and ridge regression is solved in the dual (the
`n x n` Gram matrix; n = k * classes is small). Reported: test accuracy averaged over seeds.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from mll_jax.evaluators import context as context_lib


@functools.partial(jax.jit, static_argnames=("num_classes",))
def ridge_accuracy(x, y, x_test, y_test, l2_reg: float, num_classes: int) -> jax.Array:
  """Test accuracy of the ridge classifier fit on `(x, y)`."""
  mean, std = x.mean(0, keepdims=True), x.std(0, keepdims=True) + 1e-6
  x, x_test = (x - mean) / std, (x_test - mean) / std
  bias = lambda a: jnp.concatenate([a, jnp.ones((a.shape[0], 1), a.dtype)], axis=1)
  x, x_test = bias(x), bias(x_test)
  targets = 2.0 * jax.nn.one_hot(y, num_classes) - 1.0
  gram = x @ x.T
  alpha = jnp.linalg.solve(gram + l2_reg * jnp.eye(gram.shape[0]), targets)
  predictions = (x_test @ (x.T @ alpha)).argmax(-1)
  return (predictions == y_test).mean()


def sample_shots(labels: np.ndarray, shots: int, num_classes: int, seed: int) -> np.ndarray:
  """Indices of `shots` examples of every class, deterministic in `seed`."""
  rng = np.random.default_rng(seed)
  picked = []
  for c in range(num_classes):
    members = np.flatnonzero(labels == c)
    if len(members) < shots:
      raise ValueError(f"Few-shot evaluation wants {shots} shots of class {c} but the train "
                       f"subset holds {len(members)}; raise num_train_examples or lower shots.")
    picked.append(rng.choice(members, shots, replace=False))
  return np.concatenate(picked)


class Evaluator:
  """`fewshot/{k}shot` accuracy for each k in `cfg.shots`, averaged over `cfg.seeds` draws."""

  def __init__(self, name, cfg, ctx: context_lib.EvalContext):
    self.name, self.log_steps, self.ctx, self.cfg = name, cfg.log_steps, ctx, cfg
    self.train = ctx.arrays(cfg.train_split, cfg.num_train_examples, seed=1)
    self.test = ctx.arrays(cfg.test_split, cfg.num_test_examples, seed=2)
    self.num_classes = ctx.num_classes
    features = ctx.task_function(name, "features")
    self._features = jax.jit(lambda variables, images: ctx.apply(variables, features, images))

  def __call__(self, variables) -> dict:
    embed = lambda images: context_lib.map_batches(
        self._features, variables, images, self.cfg.batch_size, self.ctx.mesh)
    train_x, test_x = embed(self.train["image"]), embed(self.test["image"])
    metrics = {}
    for shots in self.cfg.shots:
      accuracies = []
      for seed in range(self.cfg.seeds):
        idx = sample_shots(self.train["label"], shots, self.num_classes, seed)
        accuracies.append(float(ridge_accuracy(
            train_x[idx], self.train["label"][idx], test_x, self.test["label"],
            self.cfg.l2_reg, self.num_classes)))
      metrics[f"{self.name}/{shots}shot"] = float(np.mean(accuracies))
    return metrics
