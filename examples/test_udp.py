"""
UDP: a DatagramProtocol server in datagrams(), checked with the
DatagramStream that datagrams() gives when given no protocol.
"""

from __future__ import annotations

from twisted.internet.protocol import DatagramProtocol
from twisted.trial.unittest import TestCase

from cleanconn import WaitTimeout, datagrams


class EchoUDP(DatagramProtocol):
    """The server under test: sends each datagram back to its sender."""

    def datagramReceived(self, datagram: bytes, addr: tuple[str, int]) -> None:
        self.transport.write(datagram, addr)


class UDPTests(TestCase):
    async def test_echo(self) -> None:
        """A datagram sent to the server comes back, from the server."""
        async with datagrams(EchoUDP()) as server:
            address = server.transport.getHost()
            async with datagrams() as client:  # a cleanconn.DatagramStream
                client.send(b"ping", address)
                data, sender = await client.receive()
                self.assertEqual(data, b"ping")
                self.assertEqual(sender, (address.host, address.port))
        # both sockets closed, each stopListening() waited for

    async def test_connected(self) -> None:
        """A connected client sends to the server without naming it."""
        async with datagrams(EchoUDP()) as server:
            address = server.transport.getHost()
            async with datagrams(connect=address) as client:
                client.send(b"pong")
                data, _ = await client.receive()
                self.assertEqual(data, b"pong")

    async def test_lost_datagram(self) -> None:
        """A reply that never comes fails the receive, instead of hanging."""
        async with datagrams() as silent, datagrams() as client:
            client.send(b"anyone?", silent.address)
            with self.assertRaises(WaitTimeout):
                await client.receive(timeout=0.1)
