"""Sphinx configuration: MyST Markdown pages, the API reference from the docstrings, the notebooks rendered.

Build (offline, warnings as errors): ``python -m sphinx -W --keep-going -b html docs docs/_build/html``.
"""

import shutil
from pathlib import Path

import jaxstyle

ROOT = Path(__file__).resolve().parent.parent

project = "jaxstyle"
author = "jaxstyle developers"
copyright = "jaxstyle developers; VGG-19 weights: Visual Geometry Group, Oxford (CC BY 4.0)"
release = version = jaxstyle.__version__

extensions = [
    "myst_nb",  # Markdown pages (MyST) and Jupyter notebooks
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",  # Google-style Args:/Returns: sections
    "sphinx.ext.viewcode",
]
# .rst first: autosummary writes its generated pages (reStructuredText) with the first suffix.
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "jupyter_execute"]

# The notebooks keep their outputs in the repository; the build renders them without running them
# (running them is the tests' job, at a tiny size).
nb_execution_mode = "off"
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

autosummary_generate = True
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": False}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True  # a dataclass's Attributes: as a field list, not a second description of each field

html_theme = "alabaster"
html_title = "jaxstyle"
html_static_path = []

# The notebooks and figures live beside the package (notebooks/); the site renders copies of them.
_NOTEBOOKS = Path(__file__).resolve().parent / "notebooks"
shutil.rmtree(_NOTEBOOKS, ignore_errors=True)
shutil.copytree(ROOT / "notebooks", _NOTEBOOKS, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
