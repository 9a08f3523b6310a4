"""Console progress bar, one line per log step, `workdir/metrics.jsonl` (the source of truth
for every table) and TensorBoard event files beside it in `workdir/tensorboard/`.

The event files come from tensorboardX, a maintained writer that needs no TensorFlow;
`tensorboard --logdir runs` then shows every run (and every sweep point, each in its own
workdir) with its loss, learning rate, throughput and evaluators."""

import json
import time

import jax
from tensorboardX import SummaryWriter
from tqdm import tqdm

from mll_jax.storage import objects

TENSORBOARD_DIR = "tensorboard"


def drop_lines_to_be_relogged(path, start_step: int) -> None:
  """Removes from a run's metrics.jsonl what a killed attempt logged after the checkpoint this
  attempt resumes from (`start_step`), which this attempt logs again: every line when it starts
  afresh (its step-0 evaluations run again), the lines after `start_step` otherwise. Without
  this a resumed run's curve has some steps twice. Rewritten atomically (a temporary file
  renamed over it), so a kill mid-way loses nothing."""
  if not path.exists():
    return
  lines = path.read_text().splitlines()
  kept = [line for line in lines if start_step > 0 and json.loads(line)["step"] <= start_step]
  if len(kept) == len(lines):
    return
  objects.write(path, "".join(line + "\n" for line in kept).encode())


class RunLog:
  """Progress and metrics for one run; only process 0 prints or writes."""

  def __init__(self, workdir, total_steps: int, start_step: int, batch_size: int):
    self.enabled = jax.process_index() == 0
    self.path = workdir / "metrics.jsonl"
    if self.enabled:
      drop_lines_to_be_relogged(self.path, start_step)
    self.batch_size = batch_size
    self._window_start = (time.perf_counter(), start_step)
    self.bar = tqdm(total=total_steps, initial=start_step, dynamic_ncols=True, unit="step",
                    disable=not self.enabled, mininterval=1.0)
    # flush_secs: a crashed or killed run still leaves its curves readable.
    self.tensorboard = (SummaryWriter(str(workdir / TENSORBOARD_DIR), flush_secs=10)
                        if self.enabled else None)

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
    objects.append(self.path, (json.dumps({"step": step, **metrics}) + "\n").encode())
    for name, value in metrics.items():
      if isinstance(value, (int, float)) and not isinstance(value, bool):
        self.tensorboard.add_scalar(name, value, step)
    if echo:
      shown = "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in metrics.items())
      self.bar.write(f"step {step}: {shown}")

  def message(self, text: str) -> None:
    if self.enabled:
      self.bar.write(text)

  def close(self) -> None:
    self.bar.close()
    if self.tensorboard is not None:
      self.tensorboard.close()
