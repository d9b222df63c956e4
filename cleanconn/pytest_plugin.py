# mypy: disallow-untyped-decorators=False
"""
A pytest plugin that runs every test inside :func:`cleanconn.clean_reactor`.

For pytest-twisted users, who otherwise have no check at all that a test
cleaned up after itself (pytest-twisted issue #43). Switch it on for every
test in your top-level ``conftest.py``:

.. code-block:: python

    pytest_plugins = ["cleanconn.pytest_plugin"]

or with ``-p cleanconn.pytest_plugin`` (for example in ``addopts``). It needs
pytest-twisted, which runs the reactor the tests use.

Every test then gets the autouse fixture :func:`cleanconn_clean_reactor`. A
test that leaves a listening port, a connection (even a paused one) or a
pending DelayedCall on the reactor gets an error at teardown,
:class:`~cleanconn.DirtyReactorError`, naming each leftover; the leftovers
are closed and cancelled, so the next test starts clean. A test that failed
and also leaked is reported twice: its failure, and the teardown error.

What the check sees: the snapshot is taken when the fixture is set up,
before the test's other function-scoped fixtures (autouse fixtures come
first), and the check runs after they are torn down. So a function-scoped
fixture that serves for the test must clean up in its own teardown, and
module- or session-scoped fixtures are not reported.

To let one test leave things behind (a test of a leak, say), mark it:

.. code-block:: python

    @pytest.mark.cleanconn_allow_dirty_reactor
    def test_leaks_on_purpose(): ...
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

try:
    import pytest_twisted  # type: ignore[import-untyped]
except ImportError as e:  # pragma: no cover - depends on the installation
    raise ImportError(
        "cleanconn.pytest_plugin needs pytest-twisted to run the reactor for "
        "the tests: pip install pytest-twisted"
    ) from e

from ._janitor import clean_reactor

#: The marker that lets one test leave things on the reactor.
ALLOW_DIRTY_MARKER = "cleanconn_allow_dirty_reactor"


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker, so ``--strict-markers`` accepts it."""
    config.addinivalue_line(
        "markers",
        f"{ALLOW_DIRTY_MARKER}: this test may leave listening ports, "
        "connections and DelayedCalls on the reactor (cleanconn does not "
        "check it).",
    )


@pytest_twisted.async_yield_fixture(autouse=True)
async def cleanconn_clean_reactor(
    request: pytest.FixtureRequest,
) -> AsyncIterator[None]:
    """
    Run the test inside :func:`cleanconn.clean_reactor` on the global reactor.

    Autouse once the plugin is enabled; a test marked
    ``cleanconn_allow_dirty_reactor`` is not checked.

    :raises DirtyReactorError: at teardown, if the test left anything behind.
    """
    if request.node.get_closest_marker(ALLOW_DIRTY_MARKER) is not None:
        yield
        return
    async with clean_reactor():
        yield
