"""Protocols and small tools shared by the tests."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

import cleanconn

#: What a fault test allows past a documented bound (a timeout plus the
#: abort's grace), for a machine under CI's load.
MARGIN = 3.0


class TestCase(cleanconn.TestCase):
    """
    The suite's test case: cleanconn's own (a test stuck past its timeout
    is cancelled and its scopes unwind, so the next test starts clean),
    with a timeout about six times the slowest test's time under CI's load
    (3 s alone), so that a regression that hangs fails in seconds, not
    after trial's default of 120.
    """

    timeout = 20

    def timers(self) -> set[Any]:
        """The reactor's DelayedCalls, less this test's own timeouts (trial's,
        and the deadline that cleanconn's TestCase runs the test under)."""
        limit = self._cleanconn_limit
        return {
            call
            for call in reactor.getDelayedCalls()
            if "onTimeout" not in getattr(call.func, "__qualname__", "")
            and getattr(getattr(call.func, "__self__", None), "limit", None)
            is not limit
        }


class Recorder(Protocol):
    """Records every callback; ``lost`` and ``received`` are Deferreds."""

    def __init__(self) -> None:
        self.made = 0
        self.lost_count = 0
        self.data = b""
        self.reason: Failure | None = None
        self.lost: defer.Deferred[None] = defer.Deferred()
        self._wanted = 0
        self._waiter: defer.Deferred[bytes] | None = None

    def connectionMade(self) -> None:
        self.made += 1
        notify = getattr(self.factory, "one_made", None)
        if notify is not None:
            notify()

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        if self._waiter is not None and len(self.data) >= self._wanted:
            waiter, self._waiter = self._waiter, None
            waiter.callback(self.data)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.lost_count += 1
        self.reason = reason
        self.lost.callback(None)

    def received(self, count: int) -> defer.Deferred[bytes]:
        """Fires once at least ``count`` bytes have arrived."""
        if len(self.data) >= count:
            return defer.succeed(self.data)
        self._wanted = count
        self._waiter = defer.Deferred()
        return self._waiter


class Echo(Recorder):
    """Echoes what it receives, and records it."""

    def dataReceived(self, data: bytes) -> None:
        super().dataReceived(data)
        self.transport.write(data)


class Paused(Recorder):
    """A server that never reads: it pauses its transport at once."""

    def connectionMade(self) -> None:
        self.transport.pauseProducing()  # before a made() waiter resumes
        super().connectionMade()


class CountingFactory(Factory):
    """A factory that keeps every protocol it built."""

    def __init__(self, protocol: type[Protocol]) -> None:
        self.protocol = protocol
        self.built: list[Any] = []
        self.made_count = 0
        self._made_waiters: list[tuple[int, defer.Deferred[None]]] = []

    def made(self, count: int = 1) -> defer.Deferred[None]:
        """Fires once ``count`` protocols it built have run connectionMade."""
        if self.made_count >= count:
            return defer.succeed(None)
        waiter: defer.Deferred[None] = defer.Deferred()
        self._made_waiters.append((count, waiter))
        return waiter

    def one_made(self) -> None:
        self.made_count += 1
        ready = [w for w in self._made_waiters if w[0] <= self.made_count]
        for entry in ready:
            self._made_waiters.remove(entry)
            entry[1].callback(None)

    def buildProtocol(self, addr: Any) -> Any:
        proto = super().buildProtocol(addr)
        self.built.append(proto)
        return proto


def echo_factory() -> CountingFactory:
    return CountingFactory(Echo)


def client_factory() -> CountingFactory:
    return CountingFactory(Recorder)


@asynccontextmanager
async def full_serving_port() -> AsyncIterator[cleanconn.ServingPort[Any]]:
    """
    A serving() port whose accept queue is full (backlog 0, one client in
    it, accepts held): a further connect to it never completes.
    """
    async with cleanconn.serving(
        echo_factory(), "tcp:0:interface=127.0.0.1:backlog=0"
    ) as port:
        port._port.stopReading()  # fault injection: hold every accept
        filler = socket.create_connection(("127.0.0.1", port.getHost().port))
        try:
            yield port
        finally:
            filler.close()


def own_readers_writers(reactor: Any) -> set[Any]:
    """Selectables on the reactor that are connections or ports (not wakers)."""
    from twisted.internet.abstract import FileDescriptor

    found = set(reactor.getReaders()) | set(reactor.getWriters())
    return {s for s in found if isinstance(s, FileDescriptor) and _not_waker(s)}


def _not_waker(selectable: Any) -> bool:
    name = type(selectable).__name__
    return "Waker" not in name


def turn() -> defer.Deferred[None]:
    """Fires on the reactor's next turn (an ordering step, not a wait)."""
    from twisted.internet import reactor

    d: defer.Deferred[None] = defer.Deferred()
    reactor.callLater(0, d.callback, None)
    return d


@implementer(IListeningPort)
class SlowToStop:
    """
    A real listening port whose stopListening() reports ``delay`` seconds
    late. Fault injection: Twisted's own ports always stop on the next turn,
    so a slow stop (as some endpoints' ports have) is made with a timer.
    """

    def __init__(self, port: Any, delay: float) -> None:
        self._port = port
        self._delay = delay

    def __getattr__(self, name: str) -> Any:
        return getattr(self._port, name)

    def startListening(self) -> None:
        """The port listens already."""

    def stopListening(self) -> defer.Deferred[None]:
        late: defer.Deferred[None] = defer.Deferred()

        def report_late(_: object) -> None:
            self.report = reactor.callLater(self._delay, late.callback, None)

        defer.maybeDeferred(self._port.stopListening).addBoth(report_late)
        return late
