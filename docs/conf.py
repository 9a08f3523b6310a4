"""Sphinx configuration: MyST Markdown pages and an API reference from the docstrings, as flax,
optax and orbax build theirs. Built in CI (tests/test_docs.py) with warnings as errors:

    sphinx-build -W --keep-going -b html docs docs/_build/html
"""

project = "mll_jax"
author = "the mll_jax authors"
extensions = ["myst_parser", "sphinx.ext.autodoc"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "scaling_table.md"]
myst_heading_anchors = 3
html_theme = "sphinx_book_theme"
html_title = "mll_jax"
# The reference shows each signature as written; type names (jax.Array, ConfigDict, ...) are
# not resolved against other projects' inventories, which would need the network.
autodoc_typehints = "signature"
# Docstrings quote names in single backquotes, as Markdown does: show them as code.
default_role = "literal"
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "undoc-members": False}
