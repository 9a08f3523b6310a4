"""Recipe probe (issue 12): the linear probe's learning rate on an MAE encoder at 10% labels,
scored on the validation holdout (never test).

    python -m mll_jax.sweep --config=configs/linear_probe.py:mini,animal_mnist,labels=10% \\
        --sweep=experiments/sweeps/linear_probe_recipe.py \\
        --config.init_from=runs/probe/mae_mini_100ep/checkpoints/1125 \\
        --config.data.validation=0.1 --config.evals.classification.split=holdout \\
        --config.evals.classification.log_steps=68
"""


def get_sweep():
  return {"grid": {"optim.base_lr": [0.03, 0.1, 0.3, 1.0]},
          "metrics": ["classification/accuracy"]}
