"""
Many clients of one server: all at once, or held open together.

Every client is its own ``connected()`` scope, so each one is closed and
waited for on both sides, whatever the others do.
"""

from __future__ import annotations

from contextlib import AsyncExitStack

from twisted.internet.defer import ensureDeferred, gatherResults
from twisted.internet.protocol import Factory
from twisted.trial.unittest import TestCase

from cleanconn import ServingPort, connected, connected_many, serving

from .echo_protocols import Collector, Echo


class ManyClientsTests(TestCase):
    async def test_concurrent_clients(self) -> None:
        """200 clients connect, echo and disconnect concurrently."""

        async def one_client(port: ServingPort, n: int) -> bytes:
            async with connected(port, Factory.forProtocol(Collector)) as client:
                message = b"client %03d" % n
                client.transport.write(message)
                return await client.read(len(message))

        async with serving(Factory.forProtocol(Echo)) as port:
            answers = await gatherResults(
                [ensureDeferred(one_client(port, n)) for n in range(200)],
                consumeErrors=True,
            )
        self.assertEqual(answers, [b"client %03d" % n for n in range(200)])

    async def test_clients_open_together(self) -> None:
        """Ten clients held open at once: the server sees all ten."""
        async with serving(Factory.forProtocol(Echo)) as port:
            async with AsyncExitStack() as stack:
                clients = [
                    await stack.enter_async_context(
                        connected(port, Factory.forProtocol(Collector))
                    )
                    for _ in range(10)
                ]
                self.assertEqual(len(port.server_protocols), 10)
                for client in clients:
                    client.transport.write(b"hi")
                for client in clients:
                    self.assertEqual(await client.read(2), b"hi")
            # The stack closed the ten clients, and both ends were waited for.
            self.assertEqual(port.server_protocols, [])

    async def test_connected_many(self) -> None:
        """connected_many(): 300 clients as one scope, with one deadline."""
        async with serving(Factory.forProtocol(Echo)) as port:
            async with connected_many(
                port, Factory.forProtocol(Collector), 300
            ) as clients:
                self.assertEqual(len(port.server_protocols), 300)
                for n, client in enumerate(clients):
                    client.transport.write(b"%03d" % n)
                for n, client in enumerate(clients):
                    self.assertEqual(await client.read(3), b"%03d" % n)
            # All 300 connections are gone, on both sides.
            self.assertEqual(port.server_protocols, [])
