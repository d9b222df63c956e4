"""
TLS with certificate verification on: a client that trusts another CA fails
before the test body runs, and the port's CA can be given to any client.
"""

from __future__ import annotations

from OpenSSL.SSL import Error as TLSError
from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, wrapClientTLS
from twisted.internet.protocol import Factory
from twisted.trial.unittest import TestCase

from cleanconn import ThrowawayCA, connected, serving

from .echo_protocols import Collector, Echo


class TLSTests(TestCase):
    async def test_another_ca_fails_on_entry(self) -> None:
        """Verification is on: trusting the wrong CA fails, the body never runs."""
        stranger = ThrowawayCA()
        async with serving(Factory.forProtocol(Echo), tls=True) as port:
            with self.assertRaises(TLSError) as caught:
                async with connected(
                    port, Factory.forProtocol(Collector), tls=stranger.client_options()
                ):
                    self.fail("the body ran")
        self.assertIn("certificate verify failed", str(caught.exception))

    async def test_trust_for_another_client(self) -> None:
        """port.tls is the port's CA: give its trust to a client of your own."""
        async with serving(Factory.forProtocol(Echo), tls=True) as port:
            assert port.tls is not None
            endpoint = wrapClientTLS(
                port.tls.client_options("localhost"),
                TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port),
            )
            async with connected(endpoint, Factory.forProtocol(Collector)) as client:
                client.transport.write(b"hello")
                self.assertEqual(await client.read(5), b"hello")

    async def test_one_ca_for_two_servers(self) -> None:
        """Pass the same ThrowawayCA to several servers to share one trust root."""
        ca = ThrowawayCA()
        async with (
            serving(Factory.forProtocol(Echo), tls=ca) as first,
            serving(Factory.forProtocol(Echo), tls=ca) as second,
        ):
            self.assertIs(first.tls, second.tls)
            for port in (first, second):
                async with connected(port, Factory.forProtocol(Collector)) as client:
                    client.transport.write(b"ok")
                    self.assertEqual(await client.read(2), b"ok")
