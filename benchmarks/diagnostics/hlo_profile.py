"""XLA's own CPU profile of a jitted function, summed by HLO instruction: what
benchmarks/diagnostics/step_profile.py prints. No flags here, so tests can import it."""

import collections
import glob
import re
import tempfile
import time

# HLO instruction line of the optimised module: `%name = type opcode(...), kind=..., calls=...`.
_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*.*?\s([a-z][\w\-]*)\(")
_FUSION_KIND = re.compile(r"kind=(k\w+)")
_CALLS = re.compile(r"calls=%?([\w.\-]+)")


def instruction_classes(hlo_text: str) -> dict[str, str]:
  """HLO instruction name -> class, for the instructions of `hlo_text` (optimised HLO).

  A fusion is a matmul or convolution when its fused computation contains one (XLA CPU fuses
  the elementwise work around a dot into it), otherwise its fusion kind (loop, input for a
  reduction, ...)."""
  computations, current = {}, None
  for line in hlo_text.splitlines():
    header = re.match(r"^(?:ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$", line)
    if header:
      current = computations.setdefault(header.group(1), [])
    elif current is not None:
      current.append(line)
  opcodes = {}
  for lines in computations.values():
    for line in lines:
      match = _INSTRUCTION.match(line)
      if match:
        opcodes[match.group(1)] = (match.group(2), line)

  def contains(computation: str, wanted: tuple[str, ...], seen=()) -> bool:
    for line in computations.get(computation, []):
      match = _INSTRUCTION.match(line)
      if not match:
        continue
      if match.group(2) in wanted:
        return True
      called = _CALLS.search(line)
      if called and called.group(1) not in seen and contains(
          called.group(1), wanted, (*seen, called.group(1))):
        return True
    return False

  classes = {}
  for name, (opcode, line) in opcodes.items():
    called = _CALLS.search(line)
    if opcode == "fusion" and called:
      if contains(called.group(1), ("dot",)):
        classes[name] = "matmul (fused)"
      elif contains(called.group(1), ("convolution",)):
        classes[name] = "convolution (fused)"
      else:
        kind = _FUSION_KIND.search(line)
        classes[name] = f"fusion {kind.group(1) if kind else ''}".strip()
    elif opcode in ("dot", "convolution"):
      classes[name] = "matmul" if opcode == "dot" else "convolution"
    elif opcode in ("copy", "transpose", "bitcast", "reshape"):
      classes[name] = "copy / transpose"
    else:
      classes[name] = opcode
  return classes


def traced_op_times(run, batches, steps: int) -> tuple[dict[str, float], float]:
  """`({instruction: total ns}, wall seconds)` over `steps` calls of `run` under the profiler."""
  import jax
  from jax.profiler import ProfileData
  with tempfile.TemporaryDirectory() as trace_dir:
    jax.profiler.start_trace(trace_dir)
    started = time.perf_counter()
    out = None
    for i in range(steps):
      out = run(batches[i % len(batches)])
    jax.block_until_ready(out)
    wall = time.perf_counter() - started
    jax.profiler.stop_trace()
    trace = ProfileData.from_file(glob.glob(f"{trace_dir}/**/*.xplane.pb", recursive=True)[-1])
  totals = collections.defaultdict(float)
  for plane in trace.planes:
    for line in plane.lines:
      for event in line.events:
        op = dict(event.stats).get("hlo_op")
        if op:
          totals[op] += event.duration_ns
  return dict(totals), wall
