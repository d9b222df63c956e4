"""
Nested scopes: two servers with interleaved clients, and a client that goes
through a proxy under test to a backend server.

Scopes nest in the order their parts depend on each other: the backend
outlives the proxy, the proxy outlives its client. Each exit then closes
what it owns after everything inside it has already gone.
"""

from __future__ import annotations

from twisted.internet.protocol import Factory
from twisted.protocols.portforward import ProxyFactory
from twisted.trial.unittest import TestCase

from cleanconn import connected, serving

from .echo_protocols import Collector, Echo


class NestingTests(TestCase):
    async def test_through_the_proxy(self) -> None:
        async with serving(Factory.forProtocol(Echo)) as backend:
            address = backend.getHost()
            proxy_factory = ProxyFactory(address.host, address.port)
            async with serving(proxy_factory) as proxy:
                async with connected(proxy, Factory.forProtocol(Collector)) as client:
                    client.transport.write(b"via the proxy")
                    self.assertEqual(await client.read(13), b"via the proxy")
                    # The proxy's own connection to the backend did not come
                    # through connected(), and the backend sees it all the same.
                    self.assertEqual(len(backend.server_protocols), 1)
            # The proxy's scope has ended: the proxy lost its client and, in
            # turn, closed its connection to the backend.
        # The backend's scope waited for that connection to be lost too, as
        # it does for every connection it accepted.
        self.assertEqual(backend.server_protocols, [])

    async def test_two_servers(self) -> None:
        async with (
            serving(Factory.forProtocol(Echo)) as first,
            serving(Factory.forProtocol(Echo)) as second,
        ):
            async with (
                connected(first, Factory.forProtocol(Collector)) as to_first,
                connected(second, Factory.forProtocol(Collector)) as to_second,
            ):
                to_first.transport.write(b"1st")
                to_second.transport.write(b"2nd")
                self.assertEqual(await to_first.read(3), b"1st")
                self.assertEqual(await to_second.read(3), b"2nd")
                # Each client is matched to the server it connected to.
                self.assertIn(first.server_protocol(to_first), first.server_protocols)
                with self.assertRaises(LookupError):
                    second.server_protocol(to_first)
