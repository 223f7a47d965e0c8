"""Sphinx configuration of npresnet's documentation site.

Build it from the repository root with warnings as errors and every cross-reference checked
(``-n``, nitpicky), as CI does::

    pip install -e ".[docs]"
    python -m sphinx -n -W --keep-going -b html docs docs/_build/html

Markdown pages are read by MyST; the API reference is generated from the docstrings
(autosummary, numpydoc); the tutorials under ``docs/tutorials/`` are Python scripts that
sphinx-gallery runs on every build, rendering their printed output and figures.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

if TYPE_CHECKING:
    from sphinx.application import Sphinx

matplotlib.use("Agg")  # the tutorials draw with no display

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # document this checkout's npresnet, whatever else is installed
os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")  # the tutorials are small; no oversubscription

import npresnet  # noqa: E402  (after the path above)

project = "npresnet"
author = "the npresnet authors"
copyright = "npresnet authors, BSD-3-Clause"
release = version = npresnet.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "tutorials", "Thumbs.db", ".DS_Store"]
templates_path = ["_templates"]

# --- MyST: the Markdown pages, README.md included into the front page ---
myst_enable_extensions = ["colon_fence", "dollarmath"]
myst_heading_anchors = 4  # "#limits"-style links, as GitHub renders them

# --- API reference ---
autosummary_generate = True
autosummary_imported_members = True
autodoc_typehints = "none"  # numpydoc's Parameters sections state the types; signatures stay readable
numpydoc_show_class_members = False  # the class pages list their methods through autosummary's template
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_validation_checks: set[str] = set()  # the docstrings are checked by reading, not by rule numbers

# --- sphinx-gallery: the tutorials, executed on every build ---
sphinx_gallery_conf = {
    "examples_dirs": "tutorials",
    "gallery_dirs": "auto_tutorials",
    "filename_pattern": r"/plot_",  # every tutorial runs
    "run_stale_examples": True,  # on every build, even when the script has not changed
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "remove_config_comments": True,
    "capture_repr": ("_repr_html_", "__repr__"),
    "image_scrapers": ("matplotlib",),
    "abort_on_example_error": True,
    "show_memory": False,
    "reference_url": {"npresnet": None},
}

# --- HTML ---
html_theme = "pydata_sphinx_theme"
html_title = f"npresnet {release}"
html_static_path: list[str] = []
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
}
html_show_sourcelink = False


# --- nitpicky builds (-n, as CI runs them): every cross-reference must resolve ---
def _public_bases(app: Sphinx, name: str, obj: type, options: object, bases: list[type]) -> None:
    """After "Bases:", name a private base's own bases instead: ``npresnet.optim._Schedule`` has no page."""
    public: list[type] = []
    for base in bases:
        for shown in base.__bases__ if base.__name__.startswith("_") else (base,):
            if shown not in public:
                public.append(shown)
    bases[:] = public


def setup(app: Sphinx) -> None:
    app.connect("autodoc-process-bases", _public_bases)
