"""Recipe probe (issue 12): fine-tuning the `mini` ViT from the animal_mnist study's 100-epoch
SimCLR encoder at 1% labels (70 images), learning rate x layer decay, two seeds (each its own
labelled subset), scored on the validation holdout (never test). The study's recipe
(`configs/finetune.py` `pretrained_overrides`: 300 passes, base lr 4e-3, layer decay 0.75) was
chosen at 10% labels from MAE (finetune_recipe_from_mae.py).

    python -m mll_jax.sweep --config=configs/finetune.py:mini,animal_mnist,labels=1% \\
        --sweep=experiments/sweeps/finetune_recipe_from_simclr_1pct.py \\
        --workdir=runs/finetune_recipe_from_simclr_1pct \\
        --config.init_from=runs/label_efficiency/pretrain_simclr --config.num_epochs=300 \\
        --config.data.validation=0.1 --config.evals.classification.split=holdout \\
        --config.evals.classification.log_points=10 --config.evals.classification.log_steps=0

Results: experiments/results/recipe_probe_token_wd_and_1pct.md.
"""


def get_sweep():
  return {"grid": {"optim.base_lr": [2e-3, 4e-3, 8e-3], "optim.layer_decay": [0.6, 0.75, 0.9],
                   "seed": [0, 1]},
          "metrics": ["classification/accuracy"]}
