"""Budget probe for the hub's experts (issue 12): two animal_mnist experts of experiments/
hub_experts.py (`farm`, and `pets` of the hub built before 2026-12-04) fine-tuned from the
hub's MAE encoder for more passes than the 20 of the recipe, scored on the validation holdout
of their classes (never test).

    python -m mll_jax.sweep --config=configs/expert.py:mini \\
        --sweep=experiments/sweeps/expert_budget.py --workdir=runs/expert_budget \\
        --config.init_from=runs/hub_runs/mae --config.optim.base_lr=4e-3 \\
        --config.optim.layer_decay=0.75 --config.data.validation=0.1 \\
        --config.evals.classification.split=holdout --config.evals.classification.log_points=10

The 20-pass point is the hub build's own run of each expert (experiments/results/hub_build.md,
its validation curve).
"""


def get_sweep():
  return {"grid": {"num_epochs": [50.0]},
          "zip": {"classes": ["cow,sheep,horse", "cat,dog,bird"]},
          "metrics": ["classification/accuracy"]}
