# mypy: disallow-untyped-decorators=False
"""cleanconn.pytest_plugin: every pytest-twisted test checked by clean_reactor()."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
import pytest_twisted  # type: ignore[import-untyped]
from twisted.internet import reactor
from twisted.internet.protocol import Factory, Protocol

import cleanconn
from cleanconn import connected, serving
from cleanconn._janitor import _watches

ROOT = Path(cleanconn.__file__).resolve().parent.parent

_ENABLE = 'pytest_plugins = ["cleanconn.pytest_plugin"]\n'

_LEAKS = """
import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory, Protocol

# Kept, so that the garbage collector cannot close the paused client (a
# transport nothing refers to) before the plugin looks.
kept = []


def test_port():
    reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")


def test_delayed_call():
    reactor.callLater(1000, print, "forgotten")


@pytest_twisted.ensureDeferred
async def test_paused_connection():
    port = reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
    address = port.getHost()
    endpoint = TCP4ClientEndpoint(reactor, address.host, address.port)
    client = await endpoint.connect(Factory.forProtocol(Protocol))
    await port.stopListening()
    client.transport.pauseProducing()
    client.transport.getHandle()  # still open
    kept.append(client)
"""


@pytest.fixture
def inner(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> pytest.Pytester:
    """A pytester whose subprocess runs import this cleanconn."""
    path = os.environ.get("PYTHONPATH", "")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), path])))
    return pytester


def run(
    pytester: pytest.Pytester, request: pytest.FixtureRequest, *args: str
) -> pytest.RunResult:
    """Run pytest in a subprocess, on the reactor this session uses."""
    reactor_name = request.config.getoption("reactor")
    return pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", f"--reactor={reactor_name}", *args
    )


@pytest_twisted.ensureDeferred
async def test_clean_test_passes() -> None:
    """A serving()/connected() test that writes passes under the plugin."""
    async with serving(Factory.forProtocol(Protocol)) as port:
        async with connected(port, Factory.forProtocol(Protocol)) as proto:
            proto.transport.write(b"x")


def test_every_test_is_checked() -> None:
    """With the plugin on, a clean_reactor() scope is active during each test."""
    watch = _watches.get(id(reactor))
    assert watch is not None
    assert watch.scopes >= 1


def test_leaks_error_at_teardown(
    inner: pytest.Pytester, request: pytest.FixtureRequest
) -> None:
    """A leaked port, DelayedCall and paused connection each error at teardown."""
    inner.makeconftest(_ENABLE)
    inner.makepyfile(test_leaks=_LEAKS)
    result = run(inner, request)
    result.assert_outcomes(passed=3, errors=3)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_port*",
            "*DirtyReactorError*",
            "*listening port on 127.0.0.1:*",
            "*ERROR at teardown of test_delayed_call*",
            "*delayed call*print*forgotten*",
            "*ERROR at teardown of test_paused_connection*",
            "*paused: open but neither reading nor writing*",
        ]
    )


def test_leaks_blamed_under_xdist(
    inner: pytest.Pytester, request: pytest.FixtureRequest
) -> None:
    """Under pytest-xdist (-n 2) each leak is still reported at its own test."""
    inner.makeconftest(_ENABLE)
    inner.makepyfile(test_leaks=_LEAKS)
    result = run(inner, request, "-n", "2")
    result.assert_outcomes(passed=3, errors=3)
    output = result.stdout.str()
    for test, leak in (
        ("test_port", "listening port on 127.0.0.1:"),
        ("test_delayed_call", "delayed call"),
        ("test_paused_connection", "paused: open but neither reading nor writing"),
    ):
        section = output.split(f"ERROR at teardown of {test}", 1)
        assert len(section) == 2, f"no teardown error for {test}"
        assert leak in section[1].split("ERROR at teardown of", 1)[0], test


def test_without_plugin_leaks_pass(
    inner: pytest.Pytester, request: pytest.FixtureRequest
) -> None:
    """Without the plugin the same leaking tests pass: pytest-twisted has no check."""
    inner.makepyfile(test_leaks=_LEAKS)
    result = run(inner, request)
    result.assert_outcomes(passed=3)


def test_next_test_starts_clean(
    inner: pytest.Pytester, request: pytest.FixtureRequest
) -> None:
    """After a leak is reported, the leaked port is closed before the next test."""
    inner.makeconftest(_ENABLE)
    inner.makepyfile(
        test_order=textwrap.dedent(
            """
            from twisted.internet import reactor
            from twisted.internet.protocol import Factory, Protocol

            leaked = []

            def test_a_leaks():
                port = reactor.listenTCP(0, Factory(), interface="127.0.0.1")
                leaked.append(port)

            def test_b_sees_it_closed():
                assert leaked[0].disconnected
                assert leaked[0] not in reactor.getReaders()
            """
        )
    )
    result = run(inner, request, "-p", "no:randomly")
    result.assert_outcomes(passed=2, errors=1)


def test_marker_opts_out(
    inner: pytest.Pytester, request: pytest.FixtureRequest
) -> None:
    """A test marked cleanconn_allow_dirty_reactor may leak without an error."""
    inner.makeconftest(_ENABLE)
    inner.makepyfile(
        test_marked=textwrap.dedent(
            """
            import pytest
            from twisted.internet import reactor

            @pytest.mark.cleanconn_allow_dirty_reactor
            def test_leaks_on_purpose():
                reactor.callLater(1000, print, "on purpose")
            """
        )
    )
    result = run(inner, request, "--strict-markers")
    result.assert_outcomes(passed=1)
