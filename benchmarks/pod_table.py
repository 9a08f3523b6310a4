"""The pod-compile table (benchmarks/pod_compile.py's output): markdown rows from compiled
points, and the merge that keeps the points of slices not compiled this run. Kept apart from
the compiler driver so it imports without its command-line flags."""

from mll_jax import tpu_pods

def _model_flops(points: list[dict], point: dict) -> float:
  """FLOPs of the step without recompute: those of the unscanned, unrematerialised program of
  the same recipe on the same slice. XLA's cost analysis counts a while loop's body once
  (jax-ml/jax#18672), so a scanned program's own count is a fraction of its work."""
  same = [p["flops"] for p in points if p["ok"] and p["case"] == point["case"]
          and p["topology"] == point["topology"] and not p["scan"] and p["remat"] == "none"]
  return same[0] if same else float("nan")


def table(points: list[dict]) -> str:
  """Markdown rows. The MFU bound counts model FLOPs (no recompute) against the chip's peak
  over the roofline step time; scanned programs get no FLOPs or roofline (see _model_flops)."""
  rows = ["| recipe | slice | remat | scan | HBM / chip (GiB) | fits | TFLOP / step / chip | "
          "roofline step (ms) | MFU bound | compile (s) |", "|---" * 10 + "|"]
  for p in points:
    if not p["ok"]:
      rows.append(f"| {p['case']} | {p['topology']} | {p['remat']} | {p['scan']} | "
                  f"failed: {p['error']} | | | | | |")
      continue
    fits = "yes" if p["hbm_gib"] <= p["capacity_gib"] else "**no**"
    if p["scan"]:
      flops = step = mfu = "—"
    else:
      chip = tpu_pods.pod_slice(p["topology"]).chip
      flops, step = f"{p['flops'] / 1e12:.1f}", f"{p['step_ms']:.0f}"
      mfu = f"{_model_flops(points, p) / (p['step_ms'] / 1e3 * chip.peak_bf16_flops):.0%}"
    rows.append(f"| {p['case']} | {p['topology']} | {p['remat']} | {p['scan']} | "
                f"{p['hbm_gib']:.1f} of {p['capacity_gib']:.0f} | {fits} | {flops} | {step} | "
                f"{mfu} | {p['compile_s']:.0f} |")
  rows += ["", "—: XLA's cost analysis counts a scanned loop's body once (jax-ml/jax#18672), "
           "so scanned programs have no FLOPs, roofline or MFU here. The MFU bound counts the "
           "unscanned program's FLOPs over its roofline step time."]
  return "\n".join(rows)


def merged(earlier: list[dict], new: list[dict], order: tuple = ()) -> list[dict]:
  """`earlier` points of other (recipe, slice) pairs than `new`'s, then `new`, recipes in `order`,
  slices and settings in the order compiled."""
  replaced = {(p["case"], p["topology"]) for p in new}
  points = [p for p in earlier if (p["case"], p["topology"]) not in replaced] + new
  rank = {name: i for i, name in enumerate(order)}
  return sorted(points, key=lambda p: rank.get(p["case"], len(rank)))
