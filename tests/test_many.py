"""connected_many(): many clients to one serving() port, as one scope."""

from __future__ import annotations

import gc
import weakref
from typing import Any

from twisted.internet import reactor
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import Factory

from cleanconn import ConnectTimeout, clean_reactor, connected_many, serving

from ._helpers import (
    CountingFactory,
    Echo,
    Recorder,
    TestCase,
    client_factory,
    echo_factory,
)


async def echo_all(test: TestCase, clients: list[Any]) -> None:
    for index, client in enumerate(clients):
        client.transport.write(b"<%d>" % index)
    for index, client in enumerate(clients):
        expected = b"<%d>" % index
        test.assertEqual(await client.received(len(expected)), expected)


class ConnectedManyTests(TestCase):
    async def test_all_connected_and_echo(self) -> None:
        """500 clients are connected on entry, each echoes, all close at exit."""
        server = echo_factory()
        factory = client_factory()
        async with serving(server) as port:
            async with connected_many(port, factory, 500) as clients:
                self.assertEqual(len(clients), 500)
                self.assertEqual({c.made for c in clients}, {1})
                await echo_all(self, clients)
            self.assertEqual({c.lost_count for c in factory.built}, {1})
            self.assertEqual({s.lost_count for s in server.built}, {1})

    async def test_server_sides_made_and_matched(self) -> None:
        """Each client's server side ran connectionMade and is its own."""
        async with serving(echo_factory()) as port:
            async with connected_many(port, client_factory(), 50) as clients:
                peers = [port.server_protocol(c) for c in clients]
                self.assertEqual({p.made for p in peers}, {1})
                await echo_all(self, clients)
                for client, peer in zip(clients, peers, strict=True):
                    self.assertEqual(peer.data, client.data)

    async def test_freed_without_the_cycle_collector(self) -> None:
        """Once the scopes end, the port, every protocol and every transport are
        freed by reference counting: the scopes leave no reference cycle."""
        gc.disable()
        self.addCleanup(gc.enable)
        # Factories that keep no protocol: the helpers' CountingFactory does.
        async with serving(Factory.forProtocol(Echo)) as port:
            async with connected_many(
                port, Factory.forProtocol(Recorder), 20
            ) as clients:
                servers = [port.server_protocol(client) for client in clients]
                freed = [
                    weakref.ref(each)
                    for proto in (*clients, *servers)
                    for each in (proto, proto.transport)
                ]
                freed.append(weakref.ref(port))
        del port, clients, servers
        self.assertEqual([ref() for ref in freed], [None] * len(freed))

    async def test_unix(self) -> None:
        """Clients of a UNIX socket port are matched to their server sides."""
        async with serving(echo_factory(), unix=True) as port:
            async with connected_many(port, client_factory(), 50) as clients:
                self.assertEqual(len(clients), 50)
                await echo_all(self, clients)
                for client in clients:
                    self.assertEqual(port.server_protocol(client).data, client.data)

    async def test_body_raises(self) -> None:
        """A body exception propagates unchanged, and every client is closed."""
        boom = RuntimeError("boom")
        factory = client_factory()
        with self.assertRaises(RuntimeError) as caught:
            async with serving(echo_factory()) as port:
                async with connected_many(port, factory, 20):
                    raise boom
        self.assertIs(caught.exception, boom)
        self.assertEqual({c.lost_count for c in factory.built}, {1})

    async def test_refused(self) -> None:
        """A stopped port refuses: entry raises Twisted's error, nothing is left."""
        factory = client_factory()
        async with serving(echo_factory()) as port:
            await port.stopListening()
            with self.assertRaises(ConnectionRefusedError):
                async with connected_many(port, factory, 10):
                    self.fail("the body ran")
        self.assertEqual(factory.built, [])

    async def test_server_that_never_accepts(self) -> None:
        """Server sides that never show up make entry raise ConnectTimeout."""
        factory = client_factory()
        async with serving(echo_factory()) as port:
            port._port.stopReading()  # fault injection: hold every accept
            with self.assertRaises(ConnectTimeout) as caught:
                async with connected_many(port, factory, 5, timeout=0.3):
                    self.fail("the body ran")
            port._port.startReading()
        self.assertIn("server sides of 5 connection(s)", str(caught.exception))
        self.assertEqual({c.lost_count for c in factory.built}, {1})

    async def test_tls_port_refused(self) -> None:
        """A TLS port is a TypeError that points to connected()."""
        async with serving(echo_factory(), tls=True) as port:
            with self.assertRaises(TypeError) as caught:
                connected_many(port, client_factory(), 2)
        self.assertIn("connected()", str(caught.exception))

    def test_count_must_be_positive(self) -> None:
        """count=0 is a ValueError."""
        with self.assertRaises(ValueError):
            connected_many(_port(), client_factory(), 0)

    async def test_client_factory_builds_nothing(self) -> None:
        """A client factory that builds no protocol fails entry with
        NoProtocol naming it; nothing of the clients is left."""
        from twisted.internet.error import NoProtocol

        class BuildsNothing(Factory):
            def buildProtocol(self, addr: Any) -> None:
                return None

        server = echo_factory()
        async with serving(server) as port:
            with self.assertRaises(NoProtocol) as caught:
                async with connected_many(port, BuildsNothing(), 3):
                    self.fail("the body ran")
        self.assertIn("returned None", str(caught.exception))
        self.assertEqual({s.lost_count for s in server.built}, {1})

    async def test_first_of_fifty_builds_nothing(self) -> None:
        """A client factory that builds nothing for the first of 50 clients
        fails entry with NoProtocol, and stops the connects still under
        way: no connector is left connecting, every client built is closed."""
        from twisted.internet.error import NoProtocol

        class FirstBuildsNothing(CountingFactory):
            declined = False

            def buildProtocol(self, addr: Any) -> Any:
                if not self.declined:
                    self.declined = True
                    return None
                return super().buildProtocol(addr)

        factory = FirstBuildsNothing(Recorder)
        recording: Any = _ConnectorsReactor()
        async with clean_reactor():
            async with serving(echo_factory()) as port:
                with self.assertRaises(NoProtocol):
                    async with connected_many(port, factory, 50, reactor=recording):
                        self.fail("the body ran")
                self.assertEqual(len(recording.connectors), 50)
                self.assertEqual(
                    {c.state for c in recording.connectors}, {"disconnected"}
                )
                self.assertEqual({c.lost_count for c in factory.built} - {1}, set())

    async def test_entry_cancelled_from_a_client_build_protocol(self) -> None:
        """An entry cancelled from the client factory's buildProtocol (its
        second client's) closes every client made, that one too, before
        its failure arrives: nothing is left."""
        from twisted.internet.defer import CancelledError, ensureDeferred

        class CancelsAtTheSecond(CountingFactory):
            def buildProtocol(self, addr: Any) -> Any:
                if len(self.built) == 1:
                    entering.cancel()
                return super().buildProtocol(addr)

        factory = CancelsAtTheSecond(Recorder)
        async with serving(echo_factory()) as port:

            async def enter() -> None:
                async with clean_reactor(), connected_many(port, factory, 5):
                    self.fail("the body ran")

            entering = ensureDeferred(enter())
            with self.assertRaises(CancelledError):
                await entering
            self.assertEqual(len(factory.built), 2)
            self.assertEqual({c.lost_count for c in factory.built}, {1})

    async def test_server_builds_nothing(self) -> None:
        """A server factory that builds no protocol fails entry with
        ConnectionRejected; every client is closed."""
        from cleanconn import ConnectionRejected

        class Refuses(Factory):
            def buildProtocol(self, addr: Any) -> None:
                return None

        factory = client_factory()
        async with serving(Refuses()) as port:
            with self.assertRaises(ConnectionRejected) as caught:
                async with connected_many(port, factory, 3):
                    self.fail("the body ran")
        self.assertEqual(caught.exception.scope, "connected_many()")
        self.assertEqual({c.lost_count for c in factory.built}, {1})

    def test_needs_a_serving_port(self) -> None:
        """connected_many() of anything but a serving() port is a TypeError."""
        with self.assertRaises(TypeError) as caught:
            connected_many("tcp:127.0.0.1:80", client_factory(), 2)  # type: ignore[call-overload]
        self.assertIn("use connected() per client", str(caught.exception))

    async def test_needs_a_factory(self) -> None:
        """connected_many() with a protocol class is a TypeError naming the fix."""
        async with serving(echo_factory()) as port:
            with self.assertRaises(TypeError) as caught:
                connected_many(port, Recorder, 2)  # type: ignore[call-overload]
        self.assertIn("Factory.forProtocol(Recorder)", str(caught.exception))

    async def test_after_the_serving_block(self) -> None:
        """connected_many() to a port whose serving() block ended is a
        ValueError saying to connect inside it."""
        async with serving(echo_factory()) as port:
            pass
        with self.assertRaises(ValueError) as caught:
            async with connected_many(port, client_factory(), 2):
                self.fail("the body ran")
        self.assertIn("connect inside the serving() block", str(caught.exception))


def _port() -> Any:
    from cleanconn import ServingPort

    return ServingPort(client_factory(), None)


class _ConnectorsReactor:
    """The global reactor, keeping the connector of each connectTCP."""

    def __init__(self) -> None:
        self.connectors: list[Any] = []

    def connectTCP(self, *args: Any, **kwargs: Any) -> Any:
        connector = reactor.connectTCP(*args, **kwargs)
        self.connectors.append(connector)
        return connector

    def __getattr__(self, name: str) -> Any:
        return getattr(reactor, name)
