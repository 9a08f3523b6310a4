"""Validation learning curves of a study's runs: reading them from a run's metrics, averaging
them over seeds, saying how flat they end, and plotting them. Shared by the study reports."""

import json
import pathlib

import numpy as np


def read(workdir: pathlib.Path, metric: str = "validation/accuracy") -> list[tuple[int, float]]:
  """`[(step, value)]` of `metric` in a run's metrics.jsonl, in step order, one per step (the
  last logged: a run resumed before the trainer dropped a killed attempt's lines may hold a
  step twice)."""
  lines = (workdir / "metrics.jsonl").read_text().splitlines()
  by_step = {m["step"]: m[metric] for m in map(json.loads, lines) if metric in m}
  return sorted(by_step.items())


def mean_curve(curves: list[list]) -> tuple[np.ndarray, np.ndarray]:
  """(steps, mean value over seeds) of runs logged at the same steps."""
  steps = np.array([s for s, _ in curves[0]])
  return steps, np.mean([[a for _, a in c] for c in curves], axis=0)


def last_third_change(curves: list[list]) -> float:
  """Change of the mean curve over the last third of the run: near 0 when it ends flat."""
  _, values = mean_curve(curves)
  third = values[int(len(values) * 2 / 3):]
  return float(third[-1] - third[0])


def flatness(curves: list[list]) -> str:
  """How flat the mean curve ends: its last value, its best, and its last third's change."""
  steps, values = mean_curve(curves)
  return (f"{values[-1]:.3f} at step {steps[-1]}, best {values.max():.3f}; change over "
          f"the last third of the run {last_third_change(curves):+.3f}")


def plot_panels(panels: dict, path: pathlib.Path, ylabel: str) -> None:
  """A PNG of one axis per panel, one line per curve: `{title: {label: [(step, value)]}}`
  (nothing when there is no panel)."""
  if not panels:
    return
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, len(panels), figsize=(4.8 * len(panels), 3.8), squeeze=False)
  # One colour per label across the panels (a method missing from one panel keeps its colour).
  labels = list(dict.fromkeys(label for lines in panels.values() for label in lines))
  palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  colour = {label: palette[i % len(palette)] for i, label in enumerate(labels)}
  for axis, (title, lines) in zip(axes[0], panels.items()):
    for label, curve in lines.items():
      steps, values = zip(*curve)
      axis.plot(steps, values, marker=".", label=label, color=colour[label])
    axis.set_title(title)
    axis.set_xlabel("training step")
    axis.set_ylabel(ylabel)
    axis.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
