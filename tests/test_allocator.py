"""The entry points' allocator choice: tcmalloc preloaded where installed, unless told not to."""

import os
import subprocess
import sys

import pytest

from mll_jax import allocator

LIBRARY = "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"
INSTALLED = next((p for p in allocator.TCMALLOC_PATHS if os.path.exists(p)), None)


def choose(environ, installed=(LIBRARY,), platform="linux"):
  return allocator.preload_environment(environ, candidates=(LIBRARY,),
                                       exists=lambda p: p in installed, platform=platform)


def test_preloads_tcmalloc_where_installed():
  environment = choose({"PATH": "/bin"})
  assert environment == {"PATH": "/bin", "LD_PRELOAD": LIBRARY}


def test_keeps_a_preload_the_user_set():
  environment = choose({"LD_PRELOAD": "/opt/libmine.so"})
  assert environment["LD_PRELOAD"] == f"{LIBRARY} /opt/libmine.so"


def test_system_takes_an_inherited_tcmalloc_out_and_keeps_the_rest():
  environment = choose({"MLL_JAX_ALLOCATOR": "system", "LD_PRELOAD": f"{LIBRARY} /opt/x.so"})
  assert environment == {"MLL_JAX_ALLOCATOR": "system", "LD_PRELOAD": "/opt/x.so"}
  environment = choose({"MLL_JAX_ALLOCATOR": "system", "LD_PRELOAD": LIBRARY})
  assert environment == {"MLL_JAX_ALLOCATOR": "system"}


@pytest.mark.parametrize("environ, installed, platform", [
    ({"MLL_JAX_ALLOCATOR": "system"}, (LIBRARY,), "linux"),  # the user's choice
    ({"LD_PRELOAD": LIBRARY}, (LIBRARY,), "linux"),  # already re-executed: no loop
    ({}, (), "linux"),  # not installed
    ({}, (LIBRARY,), "darwin"),  # no LD_PRELOAD there
])
def test_runs_as_is(environ, installed, platform):
  assert choose(environ, installed, platform) is None


def test_unknown_choice_names_the_valid_ones():
  with pytest.raises(allocator.AllocatorChoiceError, match="'jemalloc'.*tcmalloc, system"):
    choose({"MLL_JAX_ALLOCATOR": "jemalloc"})


def test_a_missing_tcmalloc_gets_an_install_hint_only_where_it_would_be_used():
  def hint(environ, installed=(), platform="linux"):
    return allocator.missing_tcmalloc_hint(environ, candidates=(LIBRARY,),
                                           exists=lambda p: p in installed, platform=platform)
  assert "apt-get install libtcmalloc-minimal4" in hint({})
  assert hint({}, installed=(LIBRARY,)) == ""
  assert hint({"LD_PRELOAD": "/opt/libtcmalloc.so"}) == ""  # preloaded from elsewhere
  assert hint({"MLL_JAX_ALLOCATOR": "system"}) == ""  # the user's choice
  assert hint({}, platform="darwin") == ""


def test_loaded_allocator_reads_the_memory_map(tmp_path):
  maps = tmp_path / "maps"
  maps.write_text(f"7f00-7f01 r-xp 0 08:01 1 {LIBRARY}\n")
  assert allocator.loaded_allocator(str(maps)) == "tcmalloc"
  maps.write_text("7f00-7f01 r-xp 0 08:01 1 /usr/lib/x86_64-linux-gnu/libc.so.6\n")
  assert allocator.loaded_allocator(str(maps)) == "system"
  assert allocator.loaded_allocator(str(tmp_path / "missing")) == "system"


PROGRAM = ("from mll_jax.allocator import loaded_allocator\nfrom mll_jax import command\n"
           "command.start()\n"
           "print(loaded_allocator())\n")


def run_program(**environment):
  env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", allocator.SWITCH)}
  return subprocess.run([sys.executable, "-c", PROGRAM], env={**env, **environment},
                        capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(INSTALLED is None, reason="tcmalloc is not installed here "
                    "(Debian: apt-get install libtcmalloc-minimal4; .ci/run installs it)")
def test_a_command_reexecutes_itself_on_tcmalloc():
  assert run_program().stdout.strip() == "tcmalloc"
  assert run_program(MLL_JAX_ALLOCATOR="system").stdout.strip() == "system"
  assert run_program(MLL_JAX_ALLOCATOR="system", LD_PRELOAD=INSTALLED).stdout.strip() == "system"


def test_a_command_with_an_unknown_choice_stops_with_one_line():
  result = run_program(MLL_JAX_ALLOCATOR="hoard")
  assert result.returncode == 1 and result.stdout == ""
  assert result.stderr.strip().splitlines() == [
      "error: MLL_JAX_ALLOCATOR='hoard' is not an allocator mll_jax knows; use one of "
      "tcmalloc, system (tcmalloc, the default, is used where it is installed)."]


def test_the_module_prints_the_library_to_preload():
  # The README's test command and .ci/run start pytest with LD_PRELOAD=$(python -m
  # mll_jax.allocator): the tests train inside the pytest process, which nothing re-executes.
  printed = subprocess.run([sys.executable, "-m", "mll_jax.allocator"], capture_output=True,
                           text=True, timeout=60, check=True).stdout.strip()
  assert printed == (INSTALLED or "")
  assert allocator.installed_tcmalloc((LIBRARY,), exists=lambda p: False) == ""
  assert allocator.installed_tcmalloc(("/x.so", LIBRARY), exists=lambda p: p == LIBRARY) == LIBRARY


@pytest.mark.skipif(os.environ.get("CI") != "true" or INSTALLED is None,
                    reason="CI's command preloads tcmalloc (.ci/run); elsewhere it is optional")
def test_ci_runs_the_tests_on_tcmalloc():
  assert allocator.loaded_allocator() == "tcmalloc"
