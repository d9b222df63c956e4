"""
Sphinx configuration for the cleanconn documentation.

Build it with ``nox -s docs``: warnings are errors, and the doctests in the
pages run too. Every other code example is ``literalinclude``-d from
``examples/``, which the ``demo`` session runs.
"""

from __future__ import annotations

import ast
import inspect
import logging
import re
import sys
import textwrap
from pathlib import Path
from typing import Any

from sphinx.util import logging as sphinx_logging

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import cleanconn  # noqa: E402

project = "cleanconn"
author = "cleanconn developers"
copyright = "cleanconn developers"
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

# What the signatures say, in words a reader can follow and link.
#
# - zope interfaces (IProtocolFactory...) have no ``__qualname__``, so Sphinx
#   prints their repr, ``<InterfaceClass ...>``; the interfaces that a
#   documented object's module can name get one, in this process only.
# - Names in private modules (``cleanconn._serving.ServingPort``) link to
#   their public entry (``cleanconn.ServingPort``).


def _name_interfaces(*args: object) -> None:
    from zope.interface.interface import InterfaceClass

    for module in list(sys.modules.values()):
        for value in list(getattr(module, "__dict__", {}).values()):
            if isinstance(value, InterfaceClass) and "__qualname__" not in vars(value):
                value.__qualname__ = value.__name__


#: Classes whose objects cleanconn yields, never built by the reader.
_YIELDED = {
    "cleanconn.ServingPort",
    "cleanconn.ChildProcess",
    "cleanconn.ChildStdin",
    "cleanconn.ChildOutput",
    "cleanconn.Proxy",
    "cleanconn.Direction",
}


def _readable_signature(
    app: Any, what: str, name: str, obj: Any, options: Any, signature: Any, ret: Any
) -> tuple[str | None, str | None] | None:
    if not signature:
        return None
    if what == "exception" or name in _YIELDED:
        # Raised or yielded by cleanconn, never built by the reader.
        return "", None
    return signature, ret


def _data_docs(
    app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    """
    Document a constant re-exported by ``cleanconn`` with its ``#:`` comment.

    autodoc looks for that comment in ``cleanconn/__init__.py`` and, finding
    none, shows the docstring of the value's type (``float``'s).
    """
    if what != "data" or not name.startswith("cleanconn."):
        return
    from sphinx.pycode import ModuleAnalyzer

    attribute = name.rsplit(".", 1)[1]
    for module in sorted(sys.modules):
        if module.startswith("cleanconn._"):
            docs = ModuleAnalyzer.for_module(module).find_attr_docs()
            if ("", attribute) in docs:
                lines[:] = list(docs["", attribute])
                return


def _check_snippets(
    app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    """
    Keep the code blocks in docstrings from rotting.

    They are fragments (``EchoFactory`` stands for the reader's own code), so
    they cannot run; the pages' own examples are included from files that
    CI runs. Each fragment must still compile, and each call it makes to a
    function of cleanconn must fit that function's real signature.
    """
    text = "\n".join(lines)
    for block in re.finditer(
        r"\.\. code-block:: python\n\n((?:(?: {3,}.*)?\n)+)", text + "\n"
    ):
        code = textwrap.dedent(block.group(1))
        try:
            tree = compile(
                code, name, "exec", ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
            )
        except SyntaxError as e:
            _warn_snippet(name, f"does not compile: {e}")
            continue
        for call in ast.walk(tree):
            if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)):
                continue
            function = getattr(cleanconn, call.func.id, None)
            if call.func.id not in cleanconn.__all__ or not callable(function):
                continue
            arguments = [None] * sum(not isinstance(a, ast.Starred) for a in call.args)
            keywords = {k.arg: None for k in call.keywords if k.arg is not None}
            try:
                inspect.signature(function).bind(*arguments, **keywords)
            except TypeError as e:
                _warn_snippet(name, f"calls {call.func.id}() wrongly: {e}")


def _warn_snippet(name: str, problem: str) -> None:
    sphinx_logging.getLogger(__name__).warning(
        "a code block in the docstring of %s %s", name, problem
    )


def _link_public_name(app: Any, env: Any, node: Any, contnode: Any) -> Any:
    match = re.fullmatch(r"cleanconn\._\w+\.(\w+)", node.get("reftarget", ""))
    if node.get("refdomain") != "py" or match is None:
        return None
    public = f"cleanconn.{match.group(1)}"
    domain = env.get_domain("py")
    if public not in domain.objects:
        return None
    return domain.resolve_xref(
        env, node["refdoc"], app.builder, "obj", public, node, contnode
    )


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


logging.getLogger("sphinx.sphinx.ext.intersphinx").addFilter(_InventoryUnreachable())


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
    app.connect("builder-inited", _name_interfaces)
    app.connect("autodoc-before-process-signature", _name_interfaces)
    app.connect("autodoc-process-signature", _readable_signature)
    app.connect("missing-reference", _link_public_name)
    app.connect("autodoc-process-docstring", _data_docs)
    app.connect("autodoc-process-docstring", _check_snippets)
