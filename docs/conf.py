"""
Sphinx configuration for the cleanconn documentation.

Build it with ``nox -s docs``: warnings are errors, and the doctests in the
pages run too. Every other code example is ``literalinclude``-d from
``examples/``, which the ``demo`` session runs.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from sphinx.util import logging as sphinx_logging

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import cleanconn  # noqa: E402

project = "cleanconn"
author = "cleanconn developers"
copyright = "cleanconn developers"  # noqa: A001
release = version = _v if (_v := getattr(cleanconn, "__version__", None)) else ""

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.doctest",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]
templates_path: list[str] = []

html_theme = "furo"
html_title = "cleanconn"
html_static_path: list[str] = []

myst_heading_anchors = 3

# -- API reference ----------------------------------------------------------

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autodoc_default_options = {"show-inheritance": True}

# -- Doctests ------------------------------------------------------------------

import doctest  # noqa: E402

doctest_global_setup = """
import cleanconn
"""
# Unlike Sphinx's default, check exception messages too: they are part of
# what the pages promise. Whitespace is normalized so long ones can wrap.
doctest_default_flags = (
    doctest.ELLIPSIS | doctest.DONT_ACCEPT_TRUE_FOR_1 | doctest.NORMALIZE_WHITESPACE
)

# -- Links into Twisted, treq and Python -------------------------------------

intersphinx_mapping = {
    "python": ("https://docs.python.org/3", None),
    "twisted": ("https://docs.twisted.org/en/stable/", None),
    "treq": ("https://treq.readthedocs.io/en/stable/", None),
}
intersphinx_timeout = 10


class _InventoryUnreachable(logging.Filter):
    """
    Demote "failed to reach any of the inventories" from warning to info.

    The docs must build with ``-W`` on a machine without internet access (CI
    here reaches only the package index). Without the inventories, a link to
    Twisted, treq or Python renders as plain code text instead of a link:
    nothing is wrong with the docs themselves. Sphinx gives this warning no
    ``type``, so ``suppress_warnings`` cannot select it; this filter demotes
    exactly that message and nothing else. Every other warning, including
    a broken link inside these docs, still fails the build. With network
    access the inventories load and the links resolve.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.WARNING and str(record.msg).startswith(
            "failed to reach any of the inventories"
        ):
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


logging.getLogger("sphinx.sphinx.ext.intersphinx").addFilter(
    _InventoryUnreachable()
)


# -- Every public name is documented ------------------------------------------


def _check_all_documented(app: Any, env: Any) -> None:
    """Warn (an error under ``-W``) for a name in ``__all__`` with no entry."""
    documented = set(env.get_domain("py").objects)
    for name in cleanconn.__all__:
        if f"cleanconn.{name}" not in documented:
            sphinx_logging.getLogger(__name__).warning(
                "cleanconn.%s is in cleanconn.__all__ but not in "
                "reference.rst: document it there with autodoc.",
                name,
            )


def setup(app: Any) -> None:
    app.connect("env-check-consistency", _check_all_documented)
