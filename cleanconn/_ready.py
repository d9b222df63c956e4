"""
Readiness checks for :func:`~cleanconn.spawned`: when a child process is
ready for the block to run (a line it printed, an address that accepts
connections, a URL that answers).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from collections.abc import Collection
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred, succeed
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    UNIXClientEndpoint,
)
from twisted.internet.error import ConnectingCancelledError
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


class Tries:
    """
    One readiness wait's state, shared with :func:`~cleanconn.spawned`:
    whether it was called off (the wait must end, whatever the error of
    what it was doing), and the outcome of its last try, for messages.
    """

    def __init__(self) -> None:
        self.stopped = False
        self.last: str | None = None


class Readiness:
    """
    When a child process of :func:`~cleanconn.spawned` is ready: made by
    :func:`printed`, :func:`accepting` or :func:`answering` (not meant to
    be subclassed; for another check, wait for it at the top of the block).
    """

    def describe(self) -> str:
        """What is awaited, in words, for messages."""
        raise NotImplementedError  # pragma: no cover - each check has its own

    def wait(
        self, child: ChildProcess, reactor: CleanconnReactor, tries: Tries
    ) -> Deferred[None]:
        """Fires once ``child`` is ready. To call it off, set
        ``tries.stopped`` and cancel it; it fires once it has ended."""
        raise NotImplementedError  # pragma: no cover - each check has its own

    async def before(self, child: ChildProcess, reactor: CleanconnReactor) -> None:
        """Before the child starts: fail if the check would pass already."""

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

    def wait(
        self, child: ChildProcess, reactor: CleanconnReactor, tries: Tries
    ) -> Deferred[None]:
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


class _Trying(Readiness):
    """A check that tries again (a connect, a request) until it passes."""

    def wait(
        self, child: ChildProcess, reactor: CleanconnReactor, tries: Tries
    ) -> Deferred[None]:
        return ensureDeferred(self._wait(child, reactor, tries))

    async def _wait(
        self, child: ChildProcess, reactor: CleanconnReactor, tries: Tries
    ) -> None:
        raise NotImplementedError  # pragma: no cover - each check has its own


class _Accepting(_Trying):
    def __init__(self, address: IPv4Address | IPv6Address | UNIXAddress):
        self.address = address

    def describe(self) -> str:
        return f"{format_address(self.address)} to accept a connection"

    def _where(self, child: ChildProcess) -> IPv4Address | IPv6Address | UNIXAddress:
        """The address; a relative UNIX path is the child's (its cwd)."""
        address = self.address
        if isinstance(address, UNIXAddress):
            name = address.name
            assert name is not None  # accepting() made it from a path
            path = os.fsdecode(name)  # bytes: Twisted encodes a str
            if child._cwd is not None and not os.path.isabs(path):
                return UNIXAddress(os.path.join(child._cwd, path))
        return address

    def _endpoint(self, child: ChildProcess, reactor: CleanconnReactor) -> Any:
        address = self._where(child)
        if isinstance(address, UNIXAddress):
            return UNIXClientEndpoint(reactor, address.name)  # type: ignore[no-untyped-call]
        if isinstance(address, IPv6Address):
            return TCP6ClientEndpoint(reactor, address.host, address.port)  # type: ignore[no-untyped-call]
        return TCP4ClientEndpoint(reactor, address.host, address.port)

    async def _wait(
        self, child: ChildProcess, reactor: CleanconnReactor, tries: Tries
    ) -> None:
        endpoint = self._endpoint(child, reactor)
        await _retrying(reactor, lambda: _probe(endpoint, reactor), tries)
        child._reached(self._where(child))

    async def before(self, child: ChildProcess, reactor: CleanconnReactor) -> None:
        try:
            await _probe(self._endpoint(child, reactor), reactor)
        except Exception:
            return  # nothing accepts there yet: as it should be
        raise _taken(format_address(self._where(child)))


class _Answering(_Trying):
    def __init__(self, url: str, status: Collection[int]):
        self.url = url
        self.status = status

    def describe(self) -> str:
        return f"{self.url} to answer"

    async def _wait(
        self, child: ChildProcess, reactor: CleanconnReactor, tries: Tries
    ) -> None:
        await _retrying(reactor, lambda: self._get(reactor, tries), tries)
        child._answered(self.url)

    async def _get(self, reactor: CleanconnReactor, tries: Tries) -> bool:
        from ._http import http_client

        async with http_client(reactor=reactor) as client:
            response = await client.get(self.url)
            await response.content()
            if response.code in self.status:
                return True
            tries.last = f"HTTP {response.code}"
            return False

    async def before(self, child: ChildProcess, reactor: CleanconnReactor) -> None:
        parts = urlsplit(self.url)
        host = parts.hostname or "localhost"
        port = parts.port or (443 if parts.scheme == "https" else 80)
        endpoint = HostnameEndpoint(reactor, host.encode("idna"), port)
        try:
            await _probe(endpoint, reactor)
        except Exception:
            return
        raise _taken(f"{host}:{port} (of {self.url})")


def _taken(where: str) -> OSError:
    return OSError(
        errno.EADDRINUSE,
        f"spawned(): {where} already accepts connections before the child "
        "started, so the readiness check could not tell the child from what "
        "is there now. Stop what listens there, or give the child another "
        "address.",
    )


async def _retrying(reactor: CleanconnReactor, attempt: Any, tries: Tries) -> None:
    """Run ``attempt()`` until it succeeds (returns anything but
    ``False``), pausing between tries, until ``tries`` is stopped."""
    pause = FIRST_PAUSE
    while True:
        if tries.stopped:
            raise CancelledError()
        try:
            if await attempt() is not False:
                return
        except Exception as e:  # refused, reset, not there yet: try again
            if tries.stopped:
                raise CancelledError() from e
            tries.last = f"{type(e).__name__}: {e}"
        await deferLater(reactor, pause, lambda: None)
        pause = min(pause * 2, MAX_PAUSE)


class _Probe(Protocol):
    def __init__(self) -> None:
        self.gone = False
        self._waiters: list[Deferred[None]] = []

    def when_lost(self) -> Deferred[None]:
        if self.gone:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._waiters.append(waiter)
        return waiter

    def connectionMade(self) -> None:
        self.transport.loseConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.gone = True
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.called:
                waiter.callback(None)


async def _probe(endpoint: Any, reactor: CleanconnReactor) -> None:
    """Connect to ``endpoint`` and close again, waiting for both."""
    try:
        probe: _Probe = await endpoint.connect(Factory.forProtocol(_Probe))
    except (CancelledError, ConnectingCancelledError):
        # Twisted ends a cancelled connect on its next turn (the connector's
        # resolver call): wait for it, so nothing of it is left.
        with contextlib.suppress(CancelledError):
            await deferLater(reactor, 0, lambda: None)
        raise
    try:
        await probe.when_lost()
    except CancelledError:
        # Called off: abort, and wait for it (an abort ends at once).
        probe.transport.abortConnection()  # type: ignore[union-attr]
        with contextlib.suppress(CancelledError):
            await probe.when_lost()
        raise


def printed(pattern: str | bytes | re.Pattern[Any], *, on: str = "any") -> Readiness:
    """
    Ready once the child prints a line that matches ``pattern``
    (``re.search``): a complete line, ended by a newline (or by the end of
    the output).

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
    :attr:`address <cleanconn.ChildProcess.address>`. If something
    already accepts there before the child starts, :func:`spawned` fails
    at once (``OSError``, ``EADDRINUSE``): the check could not tell them
    apart.

    :param address: a TCP port on ``127.0.0.1``, a ``(host, port)`` pair
        (IPv6 when the host has a colon), or the path of a UNIX socket
        (a relative path is relative to the child's ``cwd``).
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
    :attr:`url <cleanconn.ChildProcess.url>`. As with :func:`accepting`,
    an address that accepts before the child starts is refused.

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
