# mypy: disallow-untyped-decorators=False
"""The pytest plugin's deadline: a marker, an ini option, a command line option."""

from __future__ import annotations

import os
import textwrap
import time
from pathlib import Path

import pytest
import pytest_twisted  # type: ignore[import-untyped]
from twisted.internet import defer
from twisted.internet.protocol import Factory, Protocol

import cleanconn
from cleanconn import DeadlineExceeded, deadline

ROOT = Path(cleanconn.__file__).resolve().parent.parent

_ENABLE = 'pytest_plugins = ["cleanconn.pytest_plugin"]\n'

#: A test stuck inside serving()/connected(); each side records its loss
#: in a file, so the outer test can see that both connectionLosts ran.
_STUCK = """
import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.internet.protocol import Factory, Protocol
from cleanconn import connected, serving


class Noting(Protocol):
    def connectionLost(self, reason=None):
        with open("lost.txt", "a") as f:
            f.write(type(self).__name__ + "\\n")


class Server(Noting):
    pass


class Client(Noting):
    pass


{marker}
@pytest_twisted.ensureDeferred
async def test_stuck():
    async with serving(Factory.forProtocol(Server)) as port:
        async with connected(port, Factory.forProtocol(Client)):
            await defer.Deferred()  # stuck: pytest
"""


@pytest.fixture
def inner(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> pytest.Pytester:
    """A pytester whose subprocess runs import this cleanconn, plugin on."""
    path = os.environ.get("PYTHONPATH", "")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), path])))
    pytester.makeconftest(_ENABLE)
    return pytester


def run(
    pytester: pytest.Pytester, request: pytest.FixtureRequest, *args: str
) -> tuple[pytest.RunResult, float]:
    """Run pytest in a subprocess on this session's reactor; and how long."""
    reactor_name = request.config.getoption("reactor")
    started = time.monotonic()
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--strict-markers", f"--reactor={reactor_name}", *args
    )
    return result, time.monotonic() - started


def assert_unwound(pytester: pytest.Pytester, result: pytest.RunResult) -> None:
    """The test failed by its deadline, named the line, and left nothing."""
    result.assert_outcomes(failed=1)  # no DirtyReactorError at teardown
    source = (pytester.path / "test_stuck.py").read_text().splitlines()
    line = 1 + next(n for n, text in enumerate(source) if "# stuck: pytest" in text)
    result.stdout.fnmatch_lines(
        [
            "*DeadlineExceeded: test_stuck() did not finish within deadline=0.5s.",
            f"*It was waiting in test_stuck() at *test_stuck.py, line {line}:",
            "*await defer.Deferred()  # stuck: pytest",
        ]
    )
    lost = (pytester.path / "lost.txt").read_text().split()
    assert sorted(lost) == ["Client", "Server"]


def test_marker(inner: pytest.Pytester, request: pytest.FixtureRequest) -> None:
    """@pytest.mark.cleanconn_deadline(0.5) cancels and unwinds a stuck test."""
    inner.makepyfile(
        test_stuck=_STUCK.format(marker="@pytest.mark.cleanconn_deadline(0.5)")
    )
    result, took = run(inner, request)
    assert_unwound(inner, result)
    assert took < 30


def test_ini_option(inner: pytest.Pytester, request: pytest.FixtureRequest) -> None:
    """cleanconn_deadline = 0.5 in the ini file applies to every async test."""
    inner.makeini("[pytest]\ncleanconn_deadline = 0.5\n")
    inner.makepyfile(test_stuck=_STUCK.format(marker=""))
    result, _ = run(inner, request)
    assert_unwound(inner, result)


def test_command_line_option(
    inner: pytest.Pytester, request: pytest.FixtureRequest
) -> None:
    """--cleanconn-deadline=0.5 applies to every async test."""
    inner.makepyfile(test_stuck=_STUCK.format(marker=""))
    result, _ = run(inner, request, "--cleanconn-deadline=0.5")
    assert_unwound(inner, result)


def test_marker_wins_over_ini(
    inner: pytest.Pytester, request: pytest.FixtureRequest
) -> None:
    """A test's marker wins over the ini option's default."""
    inner.makeini("[pytest]\ncleanconn_deadline = 600\n")
    inner.makepyfile(
        test_stuck=_STUCK.format(marker="@pytest.mark.cleanconn_deadline(0.5)")
    )
    result, took = run(inner, request)
    assert_unwound(inner, result)
    assert took < 30


def test_marker_takes_one_number(
    inner: pytest.Pytester, request: pytest.FixtureRequest
) -> None:
    """A deadline marker with other than one argument is a usage error."""
    inner.makepyfile(
        test_stuck=_STUCK.format(marker="@pytest.mark.cleanconn_deadline(1, 2)")
    )
    result, _ = run(inner, request)
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*cleanconn_deadline() takes one argument*"])


def test_deadline_must_be_a_number(
    inner: pytest.Pytester, request: pytest.FixtureRequest
) -> None:
    """A deadline that is not a number of seconds is a usage error."""
    inner.makeini("[pytest]\ncleanconn_deadline = soon\n")
    inner.makepyfile(test_stuck=_STUCK.format(marker=""))
    result, _ = run(inner, request)
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*must be a number of seconds, got 'soon'*"])


def test_sync_tests_unaffected(
    inner: pytest.Pytester, request: pytest.FixtureRequest
) -> None:
    """A synchronous test runs as it is, whatever the default deadline."""
    inner.makeini("[pytest]\ncleanconn_deadline = 0.1\n")
    inner.makepyfile(
        test_sync=textwrap.dedent(
            """
            import time

            def test_sync():
                time.sleep(0.3)
            """
        )
    )
    result, _ = run(inner, request)
    result.assert_outcomes(passed=1)


@pytest_twisted.ensureDeferred
async def test_decorator_in_a_pytest_twisted_test() -> None:
    """@deadline() works inside a pytest-twisted test; the error is a TimeoutError."""

    @deadline(0.2)
    async def ask() -> object:
        async with cleanconn.serving(Factory.forProtocol(Protocol)) as port:
            async with cleanconn.connected(port, Factory.forProtocol(Protocol)):
                return await defer.Deferred()

    with pytest.raises(defer.TimeoutError) as caught:
        await ask()
    assert isinstance(caught.value, DeadlineExceeded)
    assert caught.value.function.endswith("ask")
