"""Recipe probe (issue 12): fine-tuning the `mini` ViT from an MAE encoder at 10% labels, layer
decay x learning rate, scored on the validation holdout (never test).

    python -m mll_jax.sweep --config=configs/finetune.py:mini,animal_mnist,labels=10% \\
        --sweep=experiments/sweeps/finetune_recipe_from_mae.py \\
        --config.init_from=runs/probe/mae_mini_100ep/checkpoints/1125 --config.num_epochs=60 \\
        --config.data.validation=0.1 --config.evals.classification.split=holdout \\
        --config.evals.classification.log_steps=34
"""


def get_sweep():
  # The learning rate first at MAE's layer decay (0.75), then layer decay at the best rate.
  return {"zip": {"optim.layer_decay": [0.75, 0.75, 0.75, 0.75, 1.0, 0.5],
                  "optim.base_lr": [1e-3, 2e-3, 4e-3, 8e-3, 4e-3, 4e-3]},
          "metrics": ["classification/accuracy"]}
