"""
IPv6: serve on ::1, connect to the port's literal address.
"""

from __future__ import annotations

from twisted.internet.address import IPv6Address
from twisted.internet.protocol import Factory
from twisted.trial.unittest import TestCase

from cleanconn import connected, serving

from .echo_protocols import Collector, Echo


class IPv6Tests(TestCase):
    async def test_interface(self) -> None:
        """interface="::1" listens on the IPv6 loopback, on a free port."""
        async with serving(Factory.forProtocol(Echo), interface="::1") as port:
            address = port.getHost()
            self.assertIsInstance(address, IPv6Address)
            self.assertEqual(address.host, "::1")
            async with connected(port, Factory.forProtocol(Collector)) as client:
                self.assertEqual(client.transport.getPeer().host, "::1")
                client.transport.write(b"six")
                self.assertEqual(await client.read(3), b"six")

    async def test_endpoint_string(self) -> None:
        """The same with a server endpoint string: colons are escaped there."""
        endpoint = r"tcp6:0:interface=\:\:1"
        async with serving(Factory.forProtocol(Echo), endpoint) as port:
            self.assertEqual(port.getHost().host, "::1")
            async with connected(port, Factory.forProtocol(Collector)) as client:
                client.transport.write(b"v6")
                self.assertEqual(await client.read(2), b"v6")
