"""Fixed 2-D sine-cosine position embeddings (as in MAE / MoCo v3)."""

import numpy as np


def sincos_2d(grid_h: int, grid_w: int, dim: int, with_cls: bool = False) -> np.ndarray:
  """Returns a `[grid_h * grid_w (+1), dim]` float32 table of fixed position embeddings.

  Half of the channels encode the row, half the column, each as sin/cos at geometric
  frequencies; the optional first row (all zeros) belongs to the cls token. Computed with
  numpy so it is a compile-time constant of the jitted graph, never a parameter.
  """
  if dim % 4:
    raise ValueError(f"sin-cos position embeddings need a width divisible by 4, got {dim}.")
  omega = 1.0 / 10000 ** (np.arange(dim // 4, dtype=np.float64) / (dim / 4.0))
  rows, cols = np.meshgrid(np.arange(grid_h, dtype=np.float64),
                           np.arange(grid_w, dtype=np.float64), indexing="ij")

  def encode(positions):
    angles = positions.reshape(-1)[:, None] * omega[None, :]
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)

  # MAE's order: the first half of the channels encodes the column (w), the second the row (h).
  table = np.concatenate([encode(cols), encode(rows)], axis=1).astype(np.float32)
  if with_cls:
    table = np.concatenate([np.zeros((1, dim), np.float32), table], axis=0)
  return table
