"""Console progress bar, one line per log step, and `workdir/metrics.jsonl`."""

import json
import pathlib
import time

import jax
from tqdm import tqdm


class RunLog:
  """Progress and metrics for one run; only process 0 prints or writes."""

  def __init__(self, workdir: pathlib.Path, total_steps: int, start_step: int, batch_size: int):
    self.enabled = jax.process_index() == 0
    self.path = workdir / "metrics.jsonl"
    self.batch_size = batch_size
    self._window_start = (time.perf_counter(), start_step)
    self.bar = tqdm(total=total_steps, initial=start_step, dynamic_ncols=True, unit="step",
                    disable=not self.enabled, mininterval=1.0)

  def step(self, step: int, metrics: dict) -> None:
    """Advances the bar to `step` and shows the latest loss."""
    self.bar.n = step
    self.bar.set_postfix(loss=f"{metrics['loss']:.4f}", refresh=False)
    self.bar.update(0)

  def restart_window(self, step: int) -> None:
    """Starts a new throughput window (after work that is not training, e.g. evaluation)."""
    self._window_start = (time.perf_counter(), step)

  def throughput(self, step: int) -> float:
    """Images/s since the window started (restarting it)."""
    now = time.perf_counter()
    start_time, start_step = self._window_start
    self._window_start = (now, step)
    return (step - start_step) * self.batch_size / max(now - start_time, 1e-9)

  def write(self, step: int, metrics: dict[str, float], echo: bool = True) -> None:
    """Appends `{"step", **metrics}` to metrics.jsonl and prints it as one line."""
    if not self.enabled:
      return
    with self.path.open("a") as f:
      f.write(json.dumps({"step": step, **metrics}) + "\n")
    if echo:
      shown = "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in metrics.items())
      self.bar.write(f"step {step}: {shown}")

  def message(self, text: str) -> None:
    if self.enabled:
      self.bar.write(text)

  def close(self) -> None:
    self.bar.close()
