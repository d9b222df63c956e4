"""
The echo example as a trial test module: ``trial examples/test_echo.py``.

Each test listens and connects for real; when a test ends, the listener has
stopped and both ends of every connection have run ``connectionLost``. The
client is a ``cleanconn.Stream`` (``connected()`` with no factory), so the
test needs no client protocol.
"""

from __future__ import annotations

from twisted.internet.protocol import Factory
from twisted.trial.unittest import TestCase

from cleanconn import connected, serving

from .echo_protocols import Echo


class EchoTests(TestCase):
    async def test_echo(self) -> None:
        """What the client sends comes back."""
        async with serving(Factory.forProtocol(Echo)) as port:
            async with connected(port) as client:
                client.write(b"hello")
                self.assertEqual(await client.readexactly(5), b"hello")

    async def test_two_clients(self) -> None:
        """Two clients of one server each get their own bytes back."""
        async with serving(Factory.forProtocol(Echo)) as port:
            async with connected(port) as one, connected(port) as two:
                one.write(b"one")
                two.write(b"two")
                self.assertEqual(await one.readexactly(3), b"one")
                self.assertEqual(await two.readexactly(3), b"two")
