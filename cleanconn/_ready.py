"""
Readiness checks for :func:`~cleanconn.spawned`: when a child process is
ready for the block to run (a line it printed, an address that accepts
connections, a URL that answers).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    UNIXClientEndpoint,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

from ._addresses import format_address, reachable_host

if TYPE_CHECKING:
    from ._process import ChildProcess
    from ._reactor import CleanconnReactor

#: The first pause between two tries of a check that has to try again (an
#: address that refuses, a URL that does not answer yet), doubled after each
#: try up to :data:`MAX_PAUSE`: another process gives no event when it
#: starts listening, so trying again is the only way to know.
FIRST_PAUSE = 0.01
MAX_PAUSE = 0.25

_STREAMS = {"stdout": (1,), "stderr": (2,), "any": (1, 2)}


class Readiness:
    """
    When a child process of :func:`~cleanconn.spawned` is ready: made by
    :func:`printed`, :func:`accepting` or :func:`answering` (not meant to
    be subclassed; for another check, wait for it at the top of the block).
    """

    def describe(self) -> str:
        """What is awaited, in words, for messages."""
        raise NotImplementedError

    def wait(self, child: ChildProcess, reactor: CleanconnReactor) -> Deferred[None]:
        """Fires once ``child`` is ready; cancelled when it is too late."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<cleanconn readiness: {self.describe()}>"


class _Printed(Readiness):
    def __init__(self, pattern: re.Pattern[Any], fds: tuple[int, ...], on: str):
        self.pattern = pattern
        self.fds = fds
        self.on = on

    def describe(self) -> str:
        where = "stdout or stderr" if self.on == "any" else self.on
        return f"a line matching {self.pattern.pattern!r} on {where}"

    def wait(self, child: ChildProcess, reactor: CleanconnReactor) -> Deferred[None]:
        text = isinstance(self.pattern.pattern, str)

        def stop(_: object) -> None:
            child._watch = None

        found: Deferred[None] = Deferred(stop)

        def line(fd: int, data: bytes) -> None:
            if fd not in self.fds:
                return
            subject: Any = data.decode("utf-8", "replace") if text else data
            match = self.pattern.search(subject)
            if match is not None:
                child._watch = None
                child._found(match)
                found.callback(None)

        child._watch = line
        return found


class _Accepting(Readiness):
    def __init__(self, address: IPv4Address | IPv6Address | UNIXAddress):
        self.address = address

    def describe(self) -> str:
        return f"{format_address(self.address)} to accept a connection"

    def wait(self, child: ChildProcess, reactor: CleanconnReactor) -> Deferred[None]:
        from twisted.internet.defer import ensureDeferred

        return ensureDeferred(self._wait(child, reactor))

    async def _wait(self, child: ChildProcess, reactor: CleanconnReactor) -> None:
        address = self.address
        endpoint: Any
        if isinstance(address, UNIXAddress):
            endpoint = UNIXClientEndpoint(reactor, address.name)  # type: ignore[no-untyped-call]
        elif isinstance(address, IPv6Address):
            endpoint = TCP6ClientEndpoint(reactor, address.host, address.port)  # type: ignore[no-untyped-call]
        else:
            endpoint = TCP4ClientEndpoint(reactor, address.host, address.port)
        await _retrying(reactor, lambda: _probe(endpoint))
        child._reached(address)


class _Answering(Readiness):
    def __init__(self, url: str, status: Collection[int]):
        self.url = url
        self.status = status

    def describe(self) -> str:
        return f"{self.url} to answer"

    def wait(self, child: ChildProcess, reactor: CleanconnReactor) -> Deferred[None]:
        from twisted.internet.defer import ensureDeferred

        return ensureDeferred(self._wait(child, reactor))

    async def _wait(self, child: ChildProcess, reactor: CleanconnReactor) -> None:
        await _retrying(reactor, lambda: self._get(reactor))
        child._answered(self.url)

    async def _get(self, reactor: CleanconnReactor) -> bool:
        from ._http import http_client

        async with http_client(reactor=reactor) as client:
            response = await client.get(self.url)
            await response.content()
            return response.code in self.status


async def _retrying(reactor: CleanconnReactor, attempt: Any) -> None:
    """Run ``attempt()`` until it succeeds (returns anything but
    ``False``), pausing between tries; a cancel ends it."""
    pause = FIRST_PAUSE
    while True:
        try:
            if await attempt() is not False:
                return
        except CancelledError:
            raise
        except Exception:  # refused, reset, not there yet: try again
            pass
        await deferLater(reactor, pause, lambda: None)
        pause = min(pause * 2, MAX_PAUSE)


class _Probe(Protocol):
    def __init__(self) -> None:
        self.lost: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        self.transport.loseConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost.callback(None)


async def _probe(endpoint: Any) -> None:
    """Connect to ``endpoint`` and close again, waiting for both."""
    probe: _Probe = await endpoint.connect(Factory.forProtocol(_Probe))
    try:
        await probe.lost
    except CancelledError:
        # Too late: abort, and wait for it (an abort ends at once).
        probe.transport.abortConnection()  # type: ignore[union-attr]
        with contextlib.suppress(CancelledError):
            await probe.lost
        raise


def printed(pattern: str | bytes | re.Pattern[Any], *, on: str = "any") -> Readiness:
    """
    Ready once the child prints a line that matches ``pattern``
    (``re.search``).

    .. code-block:: python

        ready=printed(r"Site starting on (?P<port>\\d+)")

    The match is :attr:`ChildProcess.match <cleanconn.ChildProcess.match>`.
    If it has a group named ``port`` (and optionally ``host``), or ``path``
    for a UNIX socket, it also gives the child's :attr:`address
    <cleanconn.ChildProcess.address>`. The line stays in the stream, so the
    block can read it too.

    :param pattern: a regular expression; text (``str``) is matched against
        each line decoded from UTF-8, ``bytes`` against the raw line.
    :param on: ``"stdout"``, ``"stderr"`` or ``"any"`` (either).
    """
    if on not in _STREAMS:
        raise ValueError(
            f'printed(): on= must be "stdout", "stderr" or "any", got {on!r}'
        )
    if not isinstance(pattern, (str, bytes, re.Pattern)):
        raise TypeError(
            "printed() takes a regular expression (str, bytes or a compiled "
            f"pattern), got {type(pattern).__name__} {pattern!r}"
        )
    return _Printed(re.compile(pattern), _STREAMS[on], on)


def accepting(address: int | tuple[str, int] | str) -> Readiness:
    """
    Ready once ``address`` accepts a connection (tried again until it does;
    each try is closed and waited for). It becomes the child's
    :attr:`address <cleanconn.ChildProcess.address>`.

    :param address: a TCP port on ``127.0.0.1``, a ``(host, port)`` pair
        (IPv6 when the host has a colon), or the path of a UNIX socket.
    """
    if isinstance(address, bool):
        pass
    elif isinstance(address, int):
        if 0 < address < 65536:
            return _Accepting(IPv4Address("TCP", "127.0.0.1", address))
    elif isinstance(address, str):
        if address:
            return _Accepting(UNIXAddress(address))
    elif (
        isinstance(address, tuple)
        and len(address) == 2
        and isinstance(address[0], str)
        and isinstance(address[1], int)
        and 0 < address[1] < 65536
    ):
        host = reachable_host(address[0])
        if ":" in host:
            return _Accepting(IPv6Address("TCP", host, address[1]))
        return _Accepting(IPv4Address("TCP", host, address[1]))
    raise TypeError(
        "accepting() takes a TCP port (an int from 1 to 65535), a (host, "
        f"port) pair, or a UNIX socket path; got {address!r}"
    )


def answering(url: str, *, status: int | Collection[int] | None = None) -> Readiness:
    """
    Ready once an HTTP ``GET`` of ``url`` answers (tried again until it
    does), with a status below 500 by default. It becomes the child's
    :attr:`url <cleanconn.ChildProcess.url>`.

    :param status: the status, or statuses, that mean ready.
    """
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise TypeError(f"answering() takes an http:// or https:// URL, got {url!r}")
    codes: Collection[int]
    if status is None:
        codes = range(100, 500)
    elif isinstance(status, int):
        codes = (status,)
    else:
        codes = tuple(status)
    return _Answering(url, codes)
