"""
A test that would hang, bounded: a server that never answers.

The client asks and waits for the answer, which never comes. Under
``cleanconn.TestCase`` trial's ``timeout`` cancels such a test where it
waits; with ``@deadline(seconds)`` any coroutine gets the same. Either way
the ``async with`` blocks exit, closing both ends of the connection, and
the error names the line the test was stuck on.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory
from twisted.protocols.basic import LineReceiver

from cleanconn import (
    DeadlineExceeded,
    ServingPort,
    TestCase,
    connected,
    deadline,
    serving,
)


class Silent(LineReceiver):
    """A server that reads every question and never answers."""

    def lineReceived(self, line: bytes) -> None:
        pass


class Asker(LineReceiver):
    """A client whose ``answer`` fires with the first line it receives."""

    def __init__(self) -> None:
        self.answer: Deferred[bytes] = Deferred()

    def lineReceived(self, line: bytes) -> None:
        self.answer.callback(line)


class HangTests(TestCase):
    timeout = 10  # trial's timeout: cancels and unwinds an async def test

    async def test_the_deadline_message(self) -> None:
        """The message names the stuck line; both ends are closed."""

        @deadline(0.5)
        async def ask(port: ServingPort) -> bytes:
            async with connected(port, Factory.forProtocol(Asker)) as client:
                client.sendLine(b"ping")
                return await client.answer  # the server never answers

        async with serving(Factory.forProtocol(Silent)) as port:
            with self.assertRaises(DeadlineExceeded) as caught:
                await ask(port)
            self.assertEqual(port.server_protocols, [])  # its end is closed too
        error = caught.exception
        print(f"\n{error}")
        assert error.waiting is not None
        self.assertEqual(
            error.waiting.source,
            "return await client.answer  # the server never answers",
        )
