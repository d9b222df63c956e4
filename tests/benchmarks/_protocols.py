"""
The Twisted protocols every Twisted contender uses.

``Echo`` and ``Collector`` are the README's (from ``examples/``); the
hand-written pattern
subclasses them only to add the Deferreds it needs, so every contender runs
the same protocol code and differs only in how it waits.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.protocol import ClientFactory, Factory, Protocol
from twisted.python.failure import Failure

from examples.echo_protocols import Collector, Echo

__all__ = ["BACKLOG", "Collector", "Echo"]

#: The listen backlog every contender uses (Twisted's default of 50 drops
#: SYNs when thousands of clients connect at once).
BACKLOG = 4096


# The hand-written pattern -------------------------------------------------


class LosingEcho(Echo):
    """An ``Echo`` that fires a Deferred from ``connectionLost``."""

    factory: LosingEchoFactory

    def connectionMade(self) -> None:
        self.lost: Deferred[None] = Deferred()
        self.factory.lost.append(self.lost)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.lost.callback(None)


class LosingEchoFactory(Factory[LosingEcho]):
    """Server factory: ``lost`` holds one Deferred per accepted connection."""

    protocol = LosingEcho

    def __init__(self) -> None:
        self.lost: list[Deferred[None]] = []


class MadeCollector(Collector):
    """A ``Collector`` that fires its factory's next ``made`` Deferred."""

    factory: MadeFactory
    index = 0

    def connectionMade(self) -> None:
        self.factory.made[self.index].callback(self)


class LosingCollector(MadeCollector):
    """A ``MadeCollector`` that also fires ``lost`` from ``connectionLost``."""

    def connectionMade(self) -> None:
        self.lost: Deferred[None] = Deferred()
        self.factory.lost.append(self.lost)
        super().connectionMade()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.lost.callback(None)


class MadeFactory(ClientFactory[MadeCollector]):
    """Client factory for ``count`` connections, one ``made`` Deferred each."""

    def __init__(self, protocol: type[MadeCollector], count: int) -> None:
        self.protocol = protocol
        self.made: list[Deferred[Any]] = [Deferred() for _ in range(count)]
        self.lost: list[Deferred[None]] = []
        self._built = 0

    def buildProtocol(self, addr: Any) -> MadeCollector:
        assert self.protocol is not None
        proto = self.protocol()
        proto.factory = self
        proto.index = self._built
        self._built += 1
        return proto


class RecordingFactory(Factory[Protocol]):
    """Server factory that keeps every protocol it built."""

    def __init__(self, protocol: type[Protocol]) -> None:
        self.protocol = protocol
        self.built: list[Protocol] = []

    def buildProtocol(self, addr: Any) -> Protocol | None:
        proto = super().buildProtocol(addr)
        assert proto is not None
        self.built.append(proto)
        return proto
