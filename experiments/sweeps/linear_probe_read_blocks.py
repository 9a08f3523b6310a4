"""Recipe probe (issue 12): how many of the last blocks the pooled linear probe reads
(`model.read_blocks`, DINO's `n_last_blocks`) and which token (`model.pool`: the mean patch
token, or the cls token that MAE's and DINO's probes read), on the 300-epoch `mini` MAE of the
animal_mnist study, two seeds (each its own labelled subset), scored on the validation holdout
(never test). One sweep per label fraction:

    python -m mll_jax.sweep --config=configs/linear_probe.py:mini,animal_mnist,labels=100% \\
        --sweep=experiments/sweeps/linear_probe_read_blocks.py \\
        --workdir=runs/probe_read_blocks_100pct \\
        --config.init_from=runs/label_efficiency_bfloat16_matmul/pretrain_mae \\
        --config.model.dtype=bfloat16_matmul --config.data.validation=0.1 \\
        --config.evals.classification.split=holdout \\
        --config.evals.classification.log_points=10 --config.evals.classification.log_steps=0

The results and the choice: experiments/results/recipe_probe_read_blocks.md;
configs/linear_probe.py `read_blocks`.
"""


def get_sweep():
  return {"grid": {"model.pool": ["gap", "cls"], "model.read_blocks": [1, 2, 4],
                   "seed": [0, 1]},
          "metrics": ["classification/accuracy"]}
