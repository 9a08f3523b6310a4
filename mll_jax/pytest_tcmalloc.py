"""A pytest plugin that runs the test session on tcmalloc, as mll_jax's commands run.

The tests train and evaluate models inside the pytest process, where glibc's allocator makes
XLA's CPU steps about 1.5x slower (mll_jax/allocator.py). `pytest.ini` loads this plugin with
`-p`, which pytest imports while it reads its command line: before it captures any output and
before it imports a conftest (so before JAX starts), the one moment at which replacing the
process loses nothing. `MLL_JAX_ALLOCATOR=system` keeps glibc's allocator.
"""

from mll_jax import allocator

allocator.use_tcmalloc()
