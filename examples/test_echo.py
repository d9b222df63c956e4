"""
The echo example as a trial test module: ``trial examples/test_echo.py``.

Each test listens and connects for real; when a test ends, the listener has
stopped and both ends of every connection have run ``connectionLost``.
"""

from __future__ import annotations

from twisted.internet.protocol import Factory
from twisted.trial.unittest import TestCase

from cleanconn import connected, serving

from .echo_protocols import Collector, Echo


class EchoTests(TestCase):
    async def test_echo(self) -> None:
        """What the client sends comes back."""
        async with serving(Factory.forProtocol(Echo)) as port:
            async with connected(port, Factory.forProtocol(Collector)) as client:
                client.transport.write(b"hello")
                self.assertEqual(await client.read(5), b"hello")

    async def test_two_clients(self) -> None:
        """Two clients of one server each get their own bytes back."""
        async with serving(Factory.forProtocol(Echo)) as port:
            async with (
                connected(port, Factory.forProtocol(Collector)) as one,
                connected(port, Factory.forProtocol(Collector)) as two,
            ):
                one.transport.write(b"one")
                two.transport.write(b"two")
                self.assertEqual(await one.read(3), b"one")
                self.assertEqual(await two.read(3), b"two")
