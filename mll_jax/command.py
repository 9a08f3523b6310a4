"""What a command-line entry point sets up for its process, first thing, before JAX starts.

Importing mll_jax changes nothing in the process; a command (`python -m mll_jax.train`, the
studies, the benchmarks) is the one place that may, since it owns its process:

- libtpu's defaults for a host without TPU chips (`mll_jax/libtpu_without_chips.py`): no
  one-process lock, no questions about the host's place in a slice;
- the allocator: the command re-executes itself with tcmalloc preloaded where it is installed
  (`mll_jax/allocator.py`), since XLA's CPU steps run much faster on it.

Code that calls mll_jax from its own process (a notebook, a test session) keeps its process as
it started: preload tcmalloc at its start (`LD_PRELOAD=$(python -m mll_jax.allocator)`).
"""

from mll_jax import allocator, libtpu_without_chips


def start() -> None:
  """Set up this command's process; call it in a `__main__` block before importing JAX.

  The process may be replaced (re-executed on tcmalloc), so anything done before this call is
  done twice.
  """
  libtpu_without_chips.configure()
  allocator.use_tcmalloc()
