"""
The same echo test as ``test_echo.py``, with the teardown written by hand.

This is the pattern cleanconn replaces, shown in the documentation's "Why"
page: protocols that fire Deferreds from ``connectionMade`` and
``connectionLost``, factories that carry those Deferreds, and a teardown that
closes and then waits for all three of: the listening port, the client
connection and the server connection. It passes; it is also what every test
that listens and connects has to repeat.
"""

from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.protocol import ClientFactory, ServerFactory, connectionDone
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from .echo_protocols import Collector, Echo


class NotifyingEcho(Echo):
    """The server protocol, plus: tell the factory when the connection is gone."""

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.factory.lost.callback(None)


class NotifyingCollector(Collector):
    """The client protocol, plus: tell the factory when it is connected and gone."""

    def connectionMade(self) -> None:
        self.factory.made.callback(self)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.factory.lost.callback(None)


class NotifyingServerFactory(ServerFactory):
    protocol = NotifyingEcho

    def __init__(self) -> None:
        self.lost: Deferred[None] = Deferred()


class NotifyingClientFactory(ClientFactory):
    protocol = NotifyingCollector

    def __init__(self) -> None:
        self.made: Deferred[NotifyingCollector] = Deferred()
        self.lost: Deferred[None] = Deferred()

    def clientConnectionFailed(self, connector: object, reason: Failure) -> None:
        self.made.errback(reason)


class ByHandTests(TestCase):
    async def test_echo(self) -> None:
        server_factory = NotifyingServerFactory()
        listening = reactor.listenTCP(0, server_factory, interface="127.0.0.1")
        client_factory = NotifyingClientFactory()
        reactor.connectTCP("127.0.0.1", listening.getHost().port, client_factory)
        try:
            client = await client_factory.made
        except BaseException:
            await maybeDeferred(listening.stopListening)
            raise
        try:
            client.transport.write(b"hello")
            self.assertEqual(await client.read(5), b"hello")
        finally:
            # Close the client's end (the server's end follows), stop
            # listening, then wait for all three to have happened.
            client.transport.loseConnection()
            await maybeDeferred(listening.stopListening)
            await client_factory.lost
            await server_factory.lost
