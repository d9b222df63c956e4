"""
Reading a ``DirtyReactorError``, and fixing its cause.

``clean_reactor()`` fails its block if the code inside left something on the
reactor. Here the server under test schedules a timer for each connection
and forgets to cancel it when the connection is lost.
"""

from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from cleanconn import DirtyReactorError, clean_reactor, connected, serving


class Heartbeat(Protocol):
    """Sends a dot every second while connected; the bug: it never stops."""

    def connectionMade(self) -> None:
        self.timer: IDelayedCall = reactor.callLater(1, self.beat)

    def beat(self) -> None:
        self.transport.write(b".")
        self.timer = reactor.callLater(1, self.beat)


class FixedHeartbeat(Heartbeat):
    """The fix: stop the timer when the connection is lost."""

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.timer.active():
            self.timer.cancel()


class DirtyReactorTests(TestCase):
    async def test_the_report(self) -> None:
        with self.assertRaises(DirtyReactorError) as caught:
            async with clean_reactor():
                async with serving(Factory.forProtocol(Heartbeat)) as port:
                    async with connected(port, Factory.forProtocol(Protocol)):
                        pass
        error = caught.exception
        self.assertEqual(error.selectables, ())
        [timer] = error.delayed_calls
        self.assertIn("Heartbeat.beat", str(error))
        # clean_reactor() cancelled it before raising: the next test is safe.
        self.assertFalse(timer.active())

    async def test_the_fix(self) -> None:
        async with clean_reactor():
            async with serving(Factory.forProtocol(FixedHeartbeat)) as port:
                async with connected(port, Factory.forProtocol(Protocol)):
                    pass
