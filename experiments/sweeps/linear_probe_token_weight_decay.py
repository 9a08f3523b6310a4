"""Recipe probe (issue 12): the token probe's weight decay (AdamW's, decoupled) on the 100-epoch
`mini` MAE of the animal_mnist study, two seeds (each its own labelled subset), scored on the
validation holdout (never test). One sweep per label fraction:

    python -m mll_jax.sweep --config=configs/linear_probe.py:mini,animal_mnist,labels=10% \\
        --sweep=experiments/sweeps/linear_probe_token_weight_decay.py \\
        --workdir=runs/token_probe_weight_decay_10pct \\
        --config.init_from=runs/label_efficiency/pretrain_mae --config.model.pool=tokens \\
        --config.model.read_blocks=1 \\
        --config.data.validation=0.1 --config.evals.classification.split=holdout \\
        --config.evals.classification.log_points=10 --config.evals.classification.log_steps=0

(At `labels=1%` and `labels=100%` some of these points ran, one by one with the same flags:
the results file lists which.) The results and the choice:
experiments/results/recipe_probe_token_wd_and_1pct.md; configs/linear_probe.py
`TOKEN_WEIGHT_DECAY`.
"""


def get_sweep():
  return {"grid": {"optim.weight_decay": [0.0, 1.0, 2.0, 4.0, 8.0, 16.0], "seed": [0, 1]},
          "metrics": ["classification/accuracy"]}
