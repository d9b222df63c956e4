"""
Reading a ``CleanupTimeout``, and fixing its cause.

A server that stops reading (it is testing back-pressure, say) and a client
that writes 8 MB: the last megabytes can never be sent, so a graceful close
of the client can never finish. cleanconn aborts it when ``timeout`` runs out
and raises ``CleanupTimeout``, naming the connection and its unsent bytes.
"""

from __future__ import annotations

from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import TestCase

from cleanconn import CleanupTimeout, connected, serving


class NotReading(Protocol):
    """A server that accepts a connection and never reads from it."""

    def connectionMade(self) -> None:
        self.transport.pauseProducing()


class Quiet(Protocol):
    """A client that only writes."""


EIGHT_MB = b"x" * (8 * 1024 * 1024)


class CleanupTimeoutTests(TestCase):
    async def test_the_report(self) -> None:
        """Connecting by address: only the client's end is this scope's."""
        async with serving(Factory.forProtocol(NotReading)) as port:
            address = f"tcp:127.0.0.1:{port.getHost().port}"
            with self.assertRaises(CleanupTimeout) as caught:
                async with connected(
                    address, Factory.forProtocol(Quiet), timeout=0.5
                ) as client:
                    client.transport.write(EIGHT_MB)
        error = caught.exception
        self.assertIn("bytes unsent", str(error))
        self.assertIn("the peer was not reading", str(error))
        [report] = error.aborted
        self.assertEqual(report.side, "client")
        self.assertIs(report.protocol, Quiet)
        self.assertGreater(report.unsent, 0)

    async def test_the_fix(self) -> None:
        """Connecting to the port: cleanconn closes both ends, nothing hangs."""
        async with serving(Factory.forProtocol(NotReading)) as port:
            async with connected(
                port, Factory.forProtocol(Quiet), timeout=0.5
            ) as client:
                client.transport.write(EIGHT_MB)
