"""Ablation: MAE mask ratio x seed on the default config.

    python -m mll_jax.sweep --config=configs/mae.py --sweep=experiments/sweeps/mae_mask_ratio.py
"""


def get_sweep():
  return {"grid": {"model.mask_ratio": [0.5, 0.75, 0.9], "seed": [0, 1]},
          "metrics": ["fewshot/5shot", "fewshot/25shot", "reconstruction/loss"]}
