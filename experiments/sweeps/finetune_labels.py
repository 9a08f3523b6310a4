"""Fine-tuning from scratch at several label fractions and seeds, each fraction with the
budget configs/finetune.py sizes for it (`data.labels` alone would keep the 10% budget, and
training refuses that).

    python -m mll_jax.sweep --config=configs/finetune.py --sweep=experiments/sweeps/finetune_labels.py
"""

from configs import finetune

FRACTIONS = ["1%", "10%", "100%"]


def get_sweep():
  return {"grid": {"seed": [0, 1, 2]},
          "zip": {"data.labels": FRACTIONS,
                  "num_epochs": [finetune.budget_epochs("animal_mnist", f, pretrained=False)
                                 for f in FRACTIONS]},
          "metrics": ["classification/accuracy"]}
