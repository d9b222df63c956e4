"""serving() and connected(): the core behaviours, on real loopback sockets."""

from __future__ import annotations

import gc
import socket
import weakref
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import IHalfCloseableProtocol, IListeningPort
from twisted.internet.protocol import ClientFactory, Factory
from zope.interface import directlyProvides
from zope.interface.verify import verifyObject

from cleanconn import ServingPort, connected, serving

from ._helpers import (
    CountingFactory,
    Echo,
    Recorder,
    TestCase,
    client_factory,
    echo_factory,
    own_readers_writers,
    turn,
)


class ServingTests(TestCase):
    async def test_yields_a_listening_port(self) -> None:
        """The yielded port provides IListeningPort."""
        async with serving(echo_factory()) as port:
            self.assertTrue(verifyObject(IListeningPort, port))

    async def test_default_endpoint_is_loopback_with_a_free_port(self) -> None:
        """By default the port is TCP on 127.0.0.1 with a real, non-zero port."""
        async with serving(echo_factory()) as port:
            address = port.getHost()
            self.assertEqual((address.type, address.host), ("TCP", "127.0.0.1"))
            self.assertNotEqual(address.port, 0)

    async def test_default_backlog_is_large(self) -> None:
        """200 connects complete before any accept, and all 200 are then
        accepted: the backlog is not Twisted's 50."""
        factory = echo_factory()
        async with serving(factory) as port:
            address = (port.getHost().host, port.getHost().port)
            sockets: list[socket.socket] = []
            try:
                # The reactor cannot accept while this loop runs: with a
                # backlog of 50 the 52nd connect would time out (or, with
                # tcp_abort_on_overflow, a connection would be reset and
                # never accepted).
                for _ in range(200):
                    sockets.append(socket.create_connection(address, timeout=10))
                await factory.made(200)
            finally:
                for each in sockets:
                    each.close()

    async def test_get_host_works_after_exit(self) -> None:
        """getHost() still answers once the port stopped (Twisted's raises)."""
        async with serving(echo_factory()) as port:
            before = port.getHost()
        self.assertEqual(port.getHost(), before)

    async def test_stops_listening_at_exit(self) -> None:
        """After the exit, a new connection to the address is refused."""
        async with serving(echo_factory()) as port:
            address = port.getHost()
        endpoint = TCP4ClientEndpoint(reactor, address.host, address.port)
        with self.assertRaises(ConnectionRefusedError):
            await endpoint.connect(client_factory())

    async def test_server_endpoint_string(self) -> None:
        """An endpoint description string is listened on, and connectable."""
        async with serving(echo_factory(), "tcp:0:interface=127.0.0.1") as port:
            async with connected(port, client_factory()) as proto:
                proto.transport.write(b"s")
                self.assertEqual(await proto.received(1), b"s")

    async def test_server_endpoint_object(self) -> None:
        """An IStreamServerEndpoint is listened on, and connectable."""
        endpoint = TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
        async with serving(echo_factory(), endpoint) as port:
            async with connected(port, client_factory()) as proto:
                proto.transport.write(b"e")
                self.assertEqual(await proto.received(1), b"e")

    async def test_closes_and_waits_for_a_raw_client(self) -> None:
        """A raw connectTCP client left open is closed by the exit, server side lost."""
        server_factory = echo_factory()
        made: defer.Deferred[None] = defer.Deferred()

        class RawClient(Recorder):
            def connectionMade(self) -> None:
                super().connectionMade()
                made.callback(None)

        raw = RawClient()

        class RawFactory(ClientFactory):
            def buildProtocol(self, addr: Any) -> Recorder:
                return raw

        async with serving(server_factory) as port:
            address = port.getHost()
            reactor.connectTCP(address.host, address.port, RawFactory())
            await made
            await server_factory.made()
            server = port.server_protocols[0]
        self.assertEqual(server.lost_count, 1)
        await raw.lost
        self.assertEqual(raw.lost_count, 1)

    async def test_factory_is_started_and_stopped(self) -> None:
        """The user's factory gets doStart at entry and doStop at exit."""
        factory = echo_factory()
        async with serving(factory):
            self.assertEqual(factory.numPorts, 1)
        self.assertEqual(factory.numPorts, 0)

    async def test_twisted_names_the_users_factory(self) -> None:
        """Twisted's repr of the listening port (as trial's dirty-reactor
        report shows it) names the user's factory class, module and all."""
        factory = _Outer.Named()
        async with serving(factory) as port:
            [listening] = [
                reader
                for reader in reactor.getReaders()
                if IListeningPort.providedBy(reader)
                and reader.getHost() == port.getHost()
            ]
            self.assertIn(
                f"of <class '{__name__}._Outer.Named'> on {port.getHost().port}",
                repr(listening),
            )

    async def test_user_stop_listening_inside_body(self) -> None:
        """stopListening() inside the body stops the port there and then."""
        async with serving(echo_factory()) as port:
            await port.stopListening()
            address = port.getHost()
            endpoint = TCP4ClientEndpoint(reactor, address.host, address.port)
            with self.assertRaises(ConnectionRefusedError):
                await endpoint.connect(client_factory())


class _Outer:
    class Named(Factory):
        """A factory class with a qualified name of its own."""

        protocol = Recorder


class DeclaresHalfClose(Recorder):
    """A server protocol whose instance (not its class) declares
    IHalfCloseableProtocol; ``read_lost`` fires at the peer's half-close."""

    def __init__(self) -> None:
        super().__init__()
        self.read_lost: defer.Deferred[None] = defer.Deferred()
        directlyProvides(self, IHalfCloseableProtocol)

    def readConnectionLost(self) -> None:
        self.read_lost.callback(None)
        self.transport.write(b"still here")
        self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        pass


class ConnectedTests(TestCase):
    async def test_interfaces_declared_by_the_instance(self) -> None:
        """A protocol instance that declares IHalfCloseableProtocol itself is
        told of the peer's half-close, and can still answer."""
        server = CountingFactory(DeclaresHalfClose)
        async with serving(server) as port, connected(port) as stream:
            stream.close_write()
            self.assertEqual(await stream.read(), b"still here")
            self.assertTrue(server.built[0].read_lost.called)

    async def test_echo(self) -> None:
        """Data goes over the real socket and back."""
        async with serving(echo_factory()) as port:
            async with connected(port, client_factory()) as proto:
                proto.transport.write(b"hello")
                self.assertEqual(await proto.received(5), b"hello")

    async def test_yields_the_factory_built_protocol(self) -> None:
        """The body gets the very protocol the user's factory built."""
        factory = client_factory()
        async with serving(echo_factory()) as port:
            async with connected(port, factory) as proto:
                self.assertIs(proto, factory.built[0])

    async def test_client_connection_made_before_body(self) -> None:
        """The client's connectionMade has run when the body starts."""
        async with serving(echo_factory()) as port:
            async with connected(port, client_factory()) as proto:
                self.assertEqual(proto.made, 1)
                self.assertIsNotNone(proto.transport)

    async def test_server_connection_made_before_body(self) -> None:
        """The server side's connectionMade has run when the body starts."""
        server_factory = echo_factory()
        async with serving(server_factory) as port:
            async with connected(port, client_factory()):
                self.assertEqual(len(server_factory.built), 1)
                self.assertEqual(server_factory.built[0].made, 1)

    async def test_server_protocol_of_a_client(self) -> None:
        """port.server_protocol(proto) is the server side of that connection."""
        server_factory = echo_factory()
        async with serving(server_factory) as port:
            async with connected(port, client_factory()) as one:
                async with connected(port, client_factory()) as two:
                    self.assertIs(port.server_protocol(one), server_factory.built[0])
                    self.assertIs(port.server_protocol(two), server_factory.built[1])
                    peer = two.transport.getHost()
                    self.assertEqual(
                        port.server_protocol(two).transport.getPeer(), peer
                    )

    async def test_server_protocol_after_client_exit(self) -> None:
        """The server side stays reachable after the client scope ended."""
        async with serving(echo_factory()) as port:
            async with connected(port, client_factory()) as proto:
                proto.transport.write(b"last")
                await proto.received(4)
            server = port.server_protocol(proto)
            self.assertEqual((server.data, server.lost_count), (b"last", 1))

    async def test_server_protocol_of_a_stranger(self) -> None:
        """server_protocol() of a protocol not connected here raises LookupError."""
        async with serving(echo_factory()) as port:
            with self.assertRaises(LookupError):
                port.server_protocol(Recorder())

    async def test_exit_waits_for_both_connection_lost(self) -> None:
        """After connected()'s exit, connectionLost ran once on both sides."""
        async with serving(echo_factory()) as port:
            async with connected(port, client_factory()) as proto:
                server = port.server_protocol(proto)
            self.assertEqual((proto.lost_count, server.lost_count), (1, 1))
            self.assertEqual(port.server_protocols, [])

    async def test_callbacks_run_exactly_once(self) -> None:
        """connectionMade and connectionLost run exactly once on each side."""
        async with serving(echo_factory()) as port:
            async with connected(port, client_factory()) as proto:
                server = port.server_protocol(proto)
        self.assertEqual(
            (proto.made, proto.lost_count, server.made, server.lost_count),
            (1, 1, 1, 1),
        )

    async def test_nothing_left_on_the_reactor(self) -> None:
        """After both exits no connection, port or timer is on the reactor."""
        await turn()  # let trial schedule its own timeout call first
        before = own_readers_writers(reactor)
        calls_before = self.timers()
        async with serving(echo_factory()) as port:
            async with connected(port, client_factory()) as proto:
                proto.transport.write(b"x")
                await proto.received(1)
        self.assertEqual(own_readers_writers(reactor) - before, set())
        self.assertEqual(self.timers() - calls_before, set())

    async def test_freed_without_the_cycle_collector(self) -> None:
        """Once the scopes end, the port, both protocols and the transports are
        freed by reference counting: the scopes leave no reference cycle."""
        gc.disable()
        self.addCleanup(gc.enable)
        # Factories that keep no protocol: the helpers' CountingFactory does.
        async with serving(Factory.forProtocol(Echo)) as port:
            async with connected(port, Factory.forProtocol(Recorder)) as proto:
                server = port.server_protocol(proto)
                freed = [
                    weakref.ref(each)
                    for each in (port, proto, server, proto.transport, server.transport)
                ]
        del port, proto, server
        self.assertEqual([ref() for ref in freed], [None] * len(freed))

    async def test_client_endpoint_target(self) -> None:
        """An IStreamClientEndpoint target connects and is cleaned up."""
        async with serving(echo_factory()) as port:
            address = port.getHost()
            endpoint = TCP4ClientEndpoint(reactor, address.host, address.port)
            async with connected(endpoint, client_factory()) as proto:
                proto.transport.write(b"ep")
                self.assertEqual(await proto.received(2), b"ep")
            self.assertEqual(proto.lost_count, 1)

    async def test_client_endpoint_string_target(self) -> None:
        """A client endpoint string target connects and is cleaned up."""
        async with serving(echo_factory()) as port:
            address = port.getHost()
            target = f"tcp:127.0.0.1:{address.port}"
            async with connected(target, client_factory()) as proto:
                proto.transport.write(b"st")
                self.assertEqual(await proto.received(2), b"st")
            self.assertEqual(proto.lost_count, 1)

    async def test_plain_factory_for_protocol(self) -> None:
        """A plain Factory.forProtocol works as the client factory."""
        async with serving(Factory.forProtocol(Echo)) as port:
            async with connected(port, Factory.forProtocol(Recorder)) as proto:
                proto.transport.write(b"p")
                self.assertEqual(await proto.received(1), b"p")


class ManyTests(TestCase):
    async def test_500_concurrent_clients(self) -> None:
        """500 clients connected at once to one server all echo and all close."""
        server_factory = echo_factory()
        clients: list[Any] = []

        async def one(port: ServingPort, index: int) -> None:
            async with connected(port, client_factory()) as proto:
                clients.append(proto)
                payload = b"%d;" % index
                proto.transport.write(payload)
                self.assertEqual(await proto.received(len(payload)), payload)

        async with serving(server_factory) as port:
            await defer.gatherResults(
                [defer.ensureDeferred(one(port, i)) for i in range(500)],
                consumeErrors=True,
            )
        self.assertEqual(len(server_factory.built), 500)
        self.assertEqual({p.lost_count for p in server_factory.built}, {1})
        self.assertEqual({p.lost_count for p in clients}, {1})

    async def test_nested_servers_interleaved_clients(self) -> None:
        """Two servers, clients of each interleaved, all matched to their server."""
        first, second = echo_factory(), echo_factory()
        async with serving(first) as a, serving(second) as b:
            async with connected(a, client_factory()) as a1:
                async with connected(b, client_factory()) as b1:
                    async with connected(a, client_factory()) as a2:
                        for proto, data in ((a1, b"a1"), (b1, b"b1"), (a2, b"a2")):
                            proto.transport.write(data)
                            self.assertEqual(await proto.received(2), data)
                        self.assertIs(a.server_protocol(a2), first.built[1])
                        self.assertIs(b.server_protocol(b1), second.built[0])
                    self.assertEqual(first.built[1].lost_count, 1)
                    self.assertEqual(first.built[0].lost_count, 0)
        self.assertEqual([p.lost_count for p in first.built + second.built], [1] * 3)
