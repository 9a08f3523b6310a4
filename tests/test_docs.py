"""The front door and the docs: the README's commands are CI's, every page and README link
resolves, every module is in the API reference, and the site builds without a warning."""

import pathlib
import re
import subprocess
import sys

import pytest

from conftest import REPO_ROOT

DOCS = REPO_ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
# [text](target) with a relative target: a file of the repository (an anchor after '#').
LINK = re.compile(r"\[[^\]]*\]\((?!https?://|mailto:|#)([^)\s]+)\)")


def _code_blocks(text: str) -> list[str]:
  """The indented (4-space) command lines of a Markdown page."""
  return [line[4:] for line in text.splitlines() if line.startswith("    ") and line.strip()]


def test_the_readme_opens_with_the_two_commands_and_ci_runs_the_test_one():
  readme = (REPO_ROOT / "README.md").read_text()
  assert len(readme.splitlines()) < 200
  main_job, tests = _code_blocks(readme)[:2]
  assert main_job.endswith("python -m mll_jax.train --config=configs/mae.py")
  assert "pytest" in tests
  ci = (REPO_ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
  assert ci == tests
  assert not re.search(r"\b[Ii]ssue \d+", readme)


@pytest.mark.parametrize("page", [REPO_ROOT / "README.md", *PAGES],
                         ids=lambda p: p.relative_to(REPO_ROOT).as_posix())
def test_every_relative_link_resolves(page):
  text = page.read_text()
  for target in LINK.findall(text):
    path, _, anchor = target.partition("#")
    resolved = (page.parent / path).resolve()
    assert resolved.exists(), f"{page.name}: broken link {target}"
    if anchor and resolved.suffix == ".md":
      headings = {_slug(h) for h in re.findall(r"^#+ (.+)$", resolved.read_text(), re.M)}
      assert anchor in headings, f"{page.name}: no heading #{anchor} in {path}"


def _slug(heading: str) -> str:
  """MyST's anchor of a heading (GitHub's rule): lower case, punctuation dropped, spaces to -."""
  return re.sub(r"\s", "-", re.sub(r"[^\w\- ]", "", heading.strip().lower()))


def test_every_module_is_in_the_api_reference():
  listed = set(re.findall(r"\.\. automodule:: (\S+)", (DOCS / "api.md").read_text()))
  modules = set()
  for path in (REPO_ROOT / "mll_jax").rglob("*.py"):
    name = ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts)
    if not name.endswith("__main__"):
      modules.add(name.removesuffix(".__init__"))
  assert modules == listed, (sorted(modules - listed), sorted(listed - modules))


@pytest.mark.slow
@pytest.mark.study
def test_the_site_builds_without_warnings(tmp_path, subprocess_env):
  proc = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b",
                         "html", str(DOCS), str(tmp_path / "html")], cwd=REPO_ROOT,
                        env=subprocess_env, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  for page in PAGES:
    if page.name != "scaling_table.md":  # included in scaling.md, not a page of its own
      assert (tmp_path / "html" / f"{page.stem}.html").exists(), page.name
