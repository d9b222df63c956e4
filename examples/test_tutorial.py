"""
The tutorial's test module: ``python -m twisted.trial test_tutorial``.

It is complete on its own (the protocol under test, a test client, and the
tests), so it can be copied out of this repository and run as it is. The
documentation's tutorial walks through it piece by piece.
"""

from __future__ import annotations

from twisted.internet.defer import DeferredQueue
from twisted.internet.protocol import Factory, connectionDone
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from cleanconn import connected, serving


class Shout(LineReceiver):
    """The server under test: it answers each line in capitals."""

    delimiter = b"\n"

    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self.disconnected = False

    def lineReceived(self, line: bytes) -> None:
        self.lines.append(line)
        self.sendLine(line.upper())

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.disconnected = True


class Listener(LineReceiver):
    """A test client: each line the server sends lands in ``replies``."""

    delimiter = b"\n"

    def __init__(self) -> None:
        self.replies: DeferredQueue[bytes] = DeferredQueue()

    def lineReceived(self, line: bytes) -> None:
        self.replies.put(line)


class ShoutTests(TestCase):
    async def test_shouts_back(self) -> None:
        async with serving(Factory.forProtocol(Shout)) as port:
            async with connected(port, Factory.forProtocol(Listener)) as client:
                client.sendLine(b"hello")
                self.assertEqual(await client.replies.get(), b"HELLO")

    async def test_server_saw_every_line(self) -> None:
        async with serving(Factory.forProtocol(Shout)) as port:
            async with connected(port, Factory.forProtocol(Listener)) as client:
                server = port.server_protocol(client)
                client.sendLine(b"one")
                client.sendLine(b"two")
                self.assertEqual(await client.replies.get(), b"ONE")
                self.assertEqual(await client.replies.get(), b"TWO")
                self.assertFalse(server.disconnected)
            # The client's scope has ended: both ends ran connectionLost.
            self.assertTrue(server.disconnected)
            self.assertEqual(server.lines, [b"one", b"two"])
