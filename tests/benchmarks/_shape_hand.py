"""
Hand-written Twisted code for the shapes that ``_handwritten`` does not
cover: a ``setUp`` with ``addCleanup``, a TLS cycle with ``listenSSL`` /
``connectSSL``, and an HTTP request cycle with treq and an own pool.

Each one is what a careful user writes: it closes everything and waits for
``stopListening`` and for ``connectionLost`` on both sides before it ends.
"""

from __future__ import annotations

from typing import Any

from treq.client import HTTPClient
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred
from twisted.internet.interfaces import IHandshakeListener
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.resource import Resource
from twisted.web.server import Request, Site
from zope.interface import implementer

from ._protocols import (
    BACKLOG,
    LosingCollector,
    LosingEcho,
    LosingEchoFactory,
    MadeFactory,
)
from ._testcase import Cleanups

# setUp / addCleanup ---------------------------------------------------------


async def setup_cycles(reactor: Any, count: int) -> None:
    """``count`` tests: listen and connect in setUp, echo, run the cleanups."""
    for _ in range(count):
        test = Cleanups()
        client = await _set_up(reactor, test)
        client.transport.write(b"x")
        await client.read(1)
        await test.run_cleanups()


async def _set_up(reactor: Any, test: Cleanups) -> LosingCollector:
    server_factory = LosingEchoFactory()
    port = reactor.listenTCP(0, server_factory, backlog=BACKLOG, interface="127.0.0.1")
    test.addCleanup(port.stopListening)
    address = port.getHost()
    client_factory = MadeFactory(LosingCollector, 1)
    reactor.connectTCP(address.host, address.port, client_factory)
    client: LosingCollector = await client_factory.made[0]

    def disconnect() -> Deferred[Any]:
        client.transport.loseConnection()
        return gatherResults([client.lost, *server_factory.lost])

    test.addCleanup(disconnect)
    return client


# TLS ------------------------------------------------------------------------


@implementer(IHandshakeListener)
class HandshakeEcho(LosingEcho):
    """A ``LosingEcho`` that also fires a Deferred when its handshake is done."""

    factory: HandshakeEchoFactory

    def connectionMade(self) -> None:
        super().connectionMade()
        self.factory.handshakes.append(Deferred())

    def handshakeCompleted(self) -> None:
        self.factory.handshakes[-1].callback(None)


class HandshakeEchoFactory(LosingEchoFactory):
    """Server factory: ``handshakes`` and ``lost``, one Deferred each."""

    protocol = HandshakeEcho

    def __init__(self) -> None:
        super().__init__()
        self.handshakes: list[Deferred[None]] = []


@implementer(IHandshakeListener)
class HandshakeCollector(LosingCollector):
    """A ``LosingCollector`` that fires ``handshaken`` when the handshake is done."""

    def connectionMade(self) -> None:
        self.handshaken: Deferred[None] = Deferred()
        super().connectionMade()

    def handshakeCompleted(self) -> None:
        self.handshaken.callback(None)


async def tls_cycles(reactor: Any, count: int, ca: Any) -> None:
    """
    ``count`` TLS cycles with ``ca``'s certificates: listen, connect, wait
    for the handshake on both sides, echo one byte, close, wait for all.
    """
    for _ in range(count):
        server_factory = HandshakeEchoFactory()
        port = reactor.listenSSL(
            0,
            server_factory,
            ca.server_options(),
            backlog=BACKLOG,
            interface="127.0.0.1",
        )
        address = port.getHost()
        client_factory = MadeFactory(HandshakeCollector, 1)
        reactor.connectSSL(
            address.host, address.port, client_factory, ca.client_options(address.host)
        )
        client = await client_factory.made[0]
        await client.handshaken
        # The server side exists once the client's handshake is done: it
        # sent its half of the handshake.
        await server_factory.handshakes[0]
        client.transport.write(b"x")
        await client.read(1)
        client.transport.loseConnection()
        stopped = maybeDeferred(port.stopListening)
        await gatherResults([stopped, client.lost, *server_factory.lost])


# HTTP -----------------------------------------------------------------------


class Hello(Resource):
    """The resource both HTTP contenders serve: a two-byte body."""

    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        return b"hi"


class LosingSite(Site):
    """A ``Site`` that fires a Deferred from each channel's ``connectionLost``."""

    def __init__(self, resource: Resource) -> None:
        super().__init__(resource)
        self.lost: list[Deferred[None]] = []

    def buildProtocol(self, addr: Any) -> Any:
        channel = super().buildProtocol(addr)
        lost: Deferred[None] = Deferred()
        self.lost.append(lost)
        connection_lost = channel.connectionLost

        def connectionLost(reason: Any) -> None:
            connection_lost(reason)
            lost.callback(None)

        channel.connectionLost = connectionLost
        return channel


async def http_cycles(reactor: Any, count: int) -> None:
    """
    ``count`` HTTP cycles: serve a ``Site``, GET with treq through an own
    persistent pool, read the body, close the pool's connections, and wait
    for both sides' ``connectionLost`` and ``stopListening``.
    """
    resource = Hello()
    for _ in range(count):
        site = LosingSite(resource)
        port = reactor.listenTCP(0, site, backlog=BACKLOG, interface="127.0.0.1")
        address = port.getHost()
        pool = HTTPConnectionPool(reactor, persistent=True)
        client = HTTPClient(Agent(reactor, pool=pool))
        response = await client.get(f"http://{address.host}:{address.port}/")
        if await response.content() != b"hi":
            raise AssertionError("wrong body")
        # closeCachedConnections() fires once the client side is lost.
        closed = pool.closeCachedConnections()
        stopped = maybeDeferred(port.stopListening)
        await gatherResults([closed, stopped, *site.lost])
