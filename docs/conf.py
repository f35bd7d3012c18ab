"""Sphinx configuration of the suptickets site: ``pip install ".[docs]"``, then
``python -m sphinx -W -n docs docs/_build/html`` (what CI runs: warnings are errors)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "_ext"))

project = "suptickets"
author = "the suptickets authors"
copyright = "2026, the suptickets authors"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "cli_options",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build"]
myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3

html_theme = "furo"
html_title = "suptickets"
html_static_path = ["_static"]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
# torch.nn.Module methods a layer overrides for printing only: their inherited docstrings address torch's
# implementers, not this library's users
autodoc_default_options = {"members": True, "show-inheritance": False, "exclude-members": "extra_repr"}
napoleon_google_docstring = True
napoleon_numpy_docstring = False

# Cross-references into torch and Python are not resolved: their object inventories live on the
# web (intersphinx), and the site is built offline in CI. Every other reference must resolve.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(torch|nn|numpy|np|collections|typing|os|optional|callable)(\..*)?"),
    (r"py:class", r"(Tensor|Module|Parameter|Optimizer|Generator|Mapping|Iterable|Sequence|Callable|Any|Pair)"),
    (r"py:class", r"(int|float|str|bool|dict|list|tuple|None|object|type|Exception)"),
    (r"py:class", r"suptickets\..*\.(Pair|Config)"),
]
