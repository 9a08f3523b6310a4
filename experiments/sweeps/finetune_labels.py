"""Fine-tuning from scratch at several label fractions and seeds.

    python -m mll_jax.sweep --config=configs/finetune.py --sweep=experiments/sweeps/finetune_labels.py
"""


def get_sweep():
  return {"grid": {"data.labels": ["1%", "5%", "10%", "100%"], "seed": [0, 1, 2]},
          "metrics": ["classification/accuracy"]}
