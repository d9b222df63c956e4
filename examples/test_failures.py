"""
When things fail: a refused connection, a server that turns connections
away, and a server whose code raises. Each failure is raised where the test
can see it, and nothing is left open.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from cleanconn import ConnectionRejected, ProtocolError, connected, serving

from .echo_protocols import Collector, Echo


class TurnsAway(Factory):
    """A server factory that refuses every connection (returns None)."""

    def buildProtocol(self, addr: Any) -> None:
        return None


class Crashes(Protocol):
    """A server with a bug: it raises on the first bytes it receives."""

    def dataReceived(self, data: bytes) -> None:
        raise ValueError(f"cannot parse {data!r}")


class Watcher(Protocol):
    """A test client: ``await client.lost`` waits until the server hangs up."""

    def __init__(self) -> None:
        self.lost: Deferred[None] = Deferred()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost.callback(None)


class FailureTests(TestCase):
    async def test_refused(self) -> None:
        """Nothing listens: entering raises Twisted's own error."""
        async with serving(Factory.forProtocol(Echo)) as port:
            await port.stopListening()
            with self.assertRaises(ConnectionRefusedError):
                async with connected(port, Factory.forProtocol(Collector)):
                    self.fail("the body ran")

    async def test_turned_away(self) -> None:
        """The server's factory built no protocol: ConnectionRejected."""
        async with serving(TurnsAway()) as port:
            with self.assertRaises(ConnectionRejected) as caught:
                async with connected(port, Factory.forProtocol(Collector)):
                    self.fail("the body ran")
        self.assertIn("returned None from buildProtocol()", str(caught.exception))

    async def test_server_code_raised(self) -> None:
        """A server callback raised: the exit raises ProtocolError."""
        with self.assertRaises(ProtocolError) as caught:
            async with serving(Factory.forProtocol(Crashes)) as port:
                async with connected(port, Factory.forProtocol(Watcher)) as client:
                    client.transport.write(b"garbage")
                    # Twisted drops a connection whose dataReceived raised.
                    await client.lost
        error = caught.exception
        [(report, callback, exception)] = error.errors
        self.assertIsInstance(exception, ValueError)
        self.assertEqual((report.side, callback), ("server", "dataReceived"))
        # Twisted logged the exception too, as it always does; trial fails a
        # test that logged an error unless the test flushes it, as here.
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
