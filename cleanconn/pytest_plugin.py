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

A deadline for ``async def`` tests, as :func:`cleanconn.deadline` gives one
(in the conventions of pytest-timeout): past it, the test is cancelled
where it waits, every scope it is in exits, and it fails with
:class:`~cleanconn.DeadlineExceeded`, naming the line it was stuck on. Set
a default for every ``async def`` test with the ini option
``cleanconn_deadline = 10`` or the command line option
``--cleanconn-deadline=10``, and one test's with a marker, which wins:

.. code-block:: python

    @pytest.mark.cleanconn_deadline(5)
    @pytest_twisted.ensureDeferred
    async def test_login(): ...

A deadline of 0 means none. Synchronous tests are not affected.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Generator

import pytest

try:
    import pytest_twisted  # type: ignore[import-untyped]
except ImportError as e:  # pragma: no cover - depends on the installation
    raise ImportError(
        "cleanconn.pytest_plugin needs pytest-twisted to run the reactor for "
        "the tests: pip install pytest-twisted"
    ) from e

from ._deadline import Limit, limited
from ._janitor import clean_reactor

#: The marker that lets one test leave things on the reactor.
ALLOW_DIRTY_MARKER = "cleanconn_allow_dirty_reactor"

#: The marker, ini option and (with dashes) command line option that give
#: ``async def`` tests a :func:`~cleanconn.deadline`, in seconds.
DEADLINE_MARKER = "cleanconn_deadline"


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add the ``cleanconn_deadline`` ini and command line options."""
    help_text = (
        "seconds an async def test may run before cleanconn cancels it, "
        "unwinds its scopes and fails it (0: no deadline)"
    )
    parser.addini(DEADLINE_MARKER, help_text)
    parser.getgroup("cleanconn").addoption(
        "--cleanconn-deadline",
        dest=DEADLINE_MARKER,
        type=float,
        default=None,
        metavar="SECONDS",
        help=help_text,
    )


def _deadline_of(item: pytest.Function) -> float:
    """The test's deadline: its marker's, else the option's, else the ini's."""
    marker = item.get_closest_marker(DEADLINE_MARKER)
    if marker is not None:
        if len(marker.args) != 1 or marker.kwargs:
            raise pytest.UsageError(
                f"{item.nodeid}: @pytest.mark.{DEADLINE_MARKER}() takes one "
                f"argument, the seconds, got {marker.args!r} {marker.kwargs!r}"
            )
        value: object = marker.args[0]
    else:
        value = item.config.getoption(DEADLINE_MARKER)
        if value is None:
            value = item.config.getini(DEADLINE_MARKER) or 0
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise pytest.UsageError(
            f"{item.nodeid}: {DEADLINE_MARKER} must be a number of seconds, "
            f"got {value!r}"
        ) from None


@pytest.hookimpl(hookwrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Generator[None, None, None]:
    """Run an ``async def`` test under its deadline, if it has one."""
    test = pyfuncitem.obj
    seconds = _deadline_of(pyfuncitem)
    if not seconds or not inspect.iscoroutinefunction(test):
        yield
        return
    pyfuncitem.obj = limited(test, Limit(seconds))
    try:
        yield
    finally:
        pyfuncitem.obj = test


def pytest_configure(config: pytest.Config) -> None:
    """Register the markers, so ``--strict-markers`` accepts them."""
    config.addinivalue_line(
        "markers",
        f"{ALLOW_DIRTY_MARKER}: this test may leave listening ports, "
        "connections and DelayedCalls on the reactor (cleanconn does not "
        "check it).",
    )
    config.addinivalue_line(
        "markers",
        f"{DEADLINE_MARKER}(seconds): cancel this async def test after "
        "seconds, unwind its cleanconn scopes, and fail it with "
        "DeadlineExceeded (0: no deadline).",
    )


@pytest_twisted.async_yield_fixture(autouse=True)
async def cleanconn_clean_reactor(
    request: pytest.FixtureRequest,
) -> AsyncIterator[None]:
    """
    The plugin's check: a function-scoped, autouse fixture that runs each
    test inside :func:`cleanconn.clean_reactor`, on the global reactor
    (the one pytest-twisted runs).

    A test does not ask for it: once the plugin is enabled, every test
    gets it. It is set up before the fixtures the test asks for, and its
    check runs after they are torn down, so what the test or one of its
    function-scoped fixtures left on the reactor (a listening port, a
    connection, even a paused one, a pending ``DelayedCall``) is reported
    as an error at the test's teardown, after it was closed and cancelled.
    A test marked ``@pytest.mark.cleanconn_allow_dirty_reactor``
    (:data:`ALLOW_DIRTY_MARKER`) is not checked. It gives the test no
    value.

    :raises DirtyReactorError: at teardown, if the test left anything
        behind. See :ref:`Troubleshooting <troubleshooting-dirty-reactor>`.
    """
    if request.node.get_closest_marker(ALLOW_DIRTY_MARKER) is not None:
        yield
        return
    async with clean_reactor():
        yield
