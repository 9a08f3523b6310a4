"""Run mll_jax's commands on tcmalloc where it is installed: 1.5x faster CPU steps.

XLA's CPU runtime allocates each step's temporaries afresh. glibc's malloc hands the large
blocks back to the OS when they are freed, so every page is faulted in again on the next step:
the `mini` fine-tuning step spent 29% of its time in the kernel (about 90,000 page faults per
step). tcmalloc keeps freed memory for reuse: the same step runs 1.51x faster with no faults
(`benchmarks/results/xla_cpu_flags.md`); jemalloc and glibc's tunables do not help.

A process picks its allocator when it starts (`LD_PRELOAD`), so each command-line entry point
calls `use_tcmalloc()` (through `mll_jax.command.start`) before it imports JAX: where tcmalloc is
installed and not yet loaded, it re-executes the same command line with tcmalloc preloaded.
Importing mll_jax never does. A process of one's own (a test session, a notebook) is started
on it from outside: `LD_PRELOAD=$(python -m mll_jax.allocator) python -m pytest tests` (this
module's command prints the library's path, or nothing where it is not installed).
`MLL_JAX_ALLOCATOR=system` keeps the system allocator (e.g. to measure it), even under an inherited tcmalloc preload; other
preloads the user set are kept.
"""

import os
import sys
from typing import Callable, Mapping, Optional, Sequence

SWITCH = "MLL_JAX_ALLOCATOR"
CHOICES = ("tcmalloc", "system")
# Where the distributions put tcmalloc: Debian/Ubuntu (libtcmalloc-minimal4 or
# libgoogle-perftools4, both architectures) and Fedora/RHEL (gperftools-libs).
TCMALLOC_PATHS = (
    "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
    "/usr/lib/x86_64-linux-gnu/libtcmalloc.so.4",
    "/usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4",
    "/usr/lib/aarch64-linux-gnu/libtcmalloc.so.4",
    "/usr/lib64/libtcmalloc_minimal.so.4",
    "/usr/lib64/libtcmalloc.so.4",
)


class AllocatorChoiceError(ValueError):
  """`MLL_JAX_ALLOCATOR` names no allocator this module knows."""


def installed_tcmalloc(candidates: Sequence[str] = TCMALLOC_PATHS,
                       exists: Callable[[str], bool] = os.path.exists) -> str:
  """The path of the installed tcmalloc library, or "" where none is installed."""
  return next((path for path in candidates if exists(path)), "")


def preload_environment(environ: Mapping[str, str],
                        candidates: Sequence[str] = TCMALLOC_PATHS,
                        exists: Callable[[str], bool] = os.path.exists,
                        platform: str = sys.platform) -> Optional[dict]:
  """The environment to re-execute with so that tcmalloc is preloaded, or None to run as is.

  None when tcmalloc is already preloaded (which is also what stops the re-executed process
  from re-executing again), when it is not installed, or off Linux. With the system allocator
  chosen: None, or the environment without an inherited tcmalloc preload.
  """
  choice = environ.get(SWITCH, "tcmalloc")
  if choice not in CHOICES:
    raise AllocatorChoiceError(
        f"{SWITCH}={choice!r} is not an allocator mll_jax knows; use one of "
        f"{', '.join(CHOICES)} (tcmalloc, the default, is used where it is installed).")
  preload = environ.get("LD_PRELOAD", "")
  if choice == "system":  # a tcmalloc preloaded from outside is taken out, the rest kept
    if "tcmalloc" not in preload:
      return None
    kept = " ".join(lib for lib in preload.split() if "tcmalloc" not in lib)
    environment = {k: v for k, v in environ.items() if k != "LD_PRELOAD"}
    return {**environment, "LD_PRELOAD": kept} if kept else environment
  if not platform.startswith("linux") or "tcmalloc" in preload:
    return None
  library = installed_tcmalloc(candidates, exists)
  if not library:
    return None
  environment = dict(environ)
  environment["LD_PRELOAD"] = f"{library} {preload}".strip()
  return environment


def missing_tcmalloc_hint(environ: Mapping[str, str] = os.environ,
                          candidates: Sequence[str] = TCMALLOC_PATHS,
                          exists: Callable[[str], bool] = os.path.exists,
                          platform: str = sys.platform) -> str:
  """One line telling how to install tcmalloc where it would be used but is missing, else "".

  Without it a CPU run silently falls back to glibc's allocator, which ran the benchmarks'
  steps 1.5x slower (benchmarks/results/report.md): worth saying once at the start of a run.
  """
  if environ.get(SWITCH, "tcmalloc") != "tcmalloc" or not platform.startswith("linux"):
    return ""
  if "tcmalloc" in environ.get("LD_PRELOAD", "") or any(exists(p) for p in candidates):
    return ""
  return ("note: tcmalloc is not installed, so this CPU run uses the system allocator, about "
          "1.5x slower per step; install it (Debian/Ubuntu: apt-get install "
          "libtcmalloc-minimal4; Fedora/RHEL: dnf install gperftools-libs), or set "
          f"{SWITCH}=system to silence this.")


def loaded_allocator(maps_path: str = "/proc/self/maps") -> str:
  """Which allocator this process runs on: "tcmalloc", "jemalloc" or "system"."""
  try:
    with open(maps_path) as maps:
      text = maps.read()
  except OSError:
    return "system"
  for name in ("tcmalloc", "jemalloc"):
    if name in text:
      return name
  return "system"


def use_tcmalloc() -> None:
  """Re-execute this command line with tcmalloc preloaded, where that applies (see module doc).

  Call it first thing in a `__main__` block, before JAX is imported: the process is replaced,
  so anything done before it is done twice. An unknown `MLL_JAX_ALLOCATOR` stops with one line.
  """
  try:
    environment = preload_environment(os.environ)
  except AllocatorChoiceError as e:
    sys.exit(f"error: {e}")
  if environment is None:
    return
  sys.stdout.flush()
  sys.stderr.flush()
  # sys.orig_argv keeps `-m package.module` (sys.argv does not), so the same command reruns.
  os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], environment)


if __name__ == "__main__":  # the value for LD_PRELOAD: `LD_PRELOAD=$(python -m mll_jax.allocator)`
  print(installed_tcmalloc() if sys.platform.startswith("linux") else "")
