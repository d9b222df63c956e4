"""
One echo test per transport: IPv6, a UNIX socket, and TLS with verification
on. Run with ``trial examples.test_transports``.
"""

from __future__ import annotations

from twisted.internet.protocol import Factory
from twisted.trial.unittest import TestCase

from cleanconn import connected, serving

from .echo_protocols import Collector, Echo


class TransportTests(TestCase):
    async def test_ipv6(self) -> None:
        """IPv6 loopback: interface="::1", no escaping needed."""
        async with serving(Factory.forProtocol(Echo), interface="::1") as port:
            async with connected(port, Factory.forProtocol(Collector)) as client:
                client.transport.write(b"over ::1")
                self.assertEqual(await client.read(8), b"over ::1")

    async def test_unix_socket(self) -> None:
        """A UNIX socket in a private directory, removed at exit."""
        async with serving(Factory.forProtocol(Echo), unix=True) as port:
            async with connected(port, Factory.forProtocol(Collector)) as client:
                client.transport.write(b"local")
                self.assertEqual(await client.read(5), b"local")

    async def test_tls_verified(self) -> None:
        """TLS with a throwaway CA; the client verifies the server against it."""
        async with serving(Factory.forProtocol(Echo), tls=True) as port:
            async with connected(port, Factory.forProtocol(Collector)) as client:
                # The handshake has completed on both sides already.
                client.transport.write(b"sealed")
                self.assertEqual(await client.read(6), b"sealed")
