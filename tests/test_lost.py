"""lost(), and serving()'s exit waiting for client ends that other code opened."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import ClientFactory, Factory, Protocol
from twisted.mail import smtp
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.web.resource import Resource
from twisted.web.server import Site
from zope.interface import implementer

from cleanconn import (
    CleanupTimeout,
    base_url,
    clean_reactor,
    connected,
    lost,
    serving,
)

from ._helpers import (
    CountingFactory,
    Echo,
    Recorder,
    TestCase,
    echo_factory,
    own_readers_writers,
)
from ._smtp import MailServer
from .test_transports import has_ipv6


class Closer(Protocol):
    """A server that closes each connection as soon as it gets a byte."""

    def dataReceived(self, data: bytes) -> None:
        self.transport.loseConnection()


@implementer(IHalfCloseableProtocol)
class Stubborn(Recorder):
    """A client that keeps its side open when the server closes."""

    def readConnectionLost(self) -> None:
        pass

    def writeConnectionLost(self) -> None:
        pass


class PausedClient(Recorder):
    """A client that stops reading as soon as it is connected."""

    def connectionMade(self) -> None:
        self.transport.pauseProducing()
        super().connectionMade()


class Hello(Resource):
    isLeaf = True

    def render_GET(self, request: Any) -> bytes:
        return b"hello"


class RawClients(CountingFactory, ClientFactory):
    """A plain Twisted client factory (for connectTCP), as other code uses."""


@implementer(IHalfCloseableProtocol)
class _HalfCloseWrapper(ProtocolWrapper):
    """Twisted's ProtocolWrapper, passing half-closes on as a wrapper does."""

    def readConnectionLost(self) -> None:
        self.wrappedProtocol.readConnectionLost()

    def writeConnectionLost(self) -> None:
        self.wrappedProtocol.writeConnectionLost()


class _HalfCloseWrapping(WrappingFactory):
    protocol = _HalfCloseWrapper


class LostTests(TestCase):
    async def test_client_protocol(self) -> None:
        """lost(client) fires once the client's connectionLost ran."""
        async with serving(Factory.forProtocol(Closer)) as port:
            async with connected(port, CountingFactory(Recorder)) as client:
                client.transport.write(b"x")
                await lost(client)
                self.assertEqual(client.lost_count, 1)

    async def test_server_protocol(self) -> None:
        """lost(server side) fires once the server side's connectionLost ran."""
        async with serving(echo_factory()) as port:
            async with connected(port, CountingFactory(Recorder)) as client:
                server = port.server_protocol(client)
                client.transport.loseConnection()
                await lost(server)
                self.assertEqual(server.lost_count, 1)

    async def test_stream(self) -> None:
        """lost(stream) fires once the stream closed and its connectionLost ran."""
        async with serving(echo_factory()) as port, connected(port) as stream:
            stream.close()
            await lost(stream)
            self.assertTrue(stream.at_eof())

    async def test_waiting_repr(self) -> None:
        """A waiting lost() says whose connectionLost it waits for."""
        async with serving(echo_factory()) as port:
            async with connected(port, CountingFactory(Recorder)) as client:
                waiting = lost(client)
                self.assertIn("its connectionLost has not run", repr(waiting))
                self.assertIn(repr(client), repr(waiting))
                client.transport.loseConnection()
                await waiting

    async def test_already_lost(self) -> None:
        """lost() of a protocol whose connection is gone has already fired."""
        async with serving(echo_factory()) as port:
            async with connected(port, CountingFactory(Recorder)) as client:
                pass
            self.assertIsNone(self.successResultOf(lost(client)))

    async def test_not_a_cleanconn_connection(self) -> None:
        """lost() of an open connection no scope made raises LookupError saying so."""
        async with serving(echo_factory()) as port:
            factory = RawClients(Recorder)
            connector = reactor.connectTCP("127.0.0.1", port.getHost().port, factory)
            try:
                await factory.made()
                with self.assertRaises(LookupError) as caught:
                    lost(factory.built[0])
                self.assertEqual(
                    str(caught.exception),
                    f"lost(): {factory.built[0]!r} is connected, but not by a "
                    "cleanconn scope that is still open, so cleanconn cannot "
                    "see its connectionLost. Connect it with connected() or "
                    "accept it on a serving() port; for a connection of your "
                    "own, fire a Deferred from its protocol's connectionLost.",
                )
            finally:
                connector.disconnect()
                await factory.built[0].lost

    def test_protocol_on_a_memory_transport(self) -> None:
        """lost() of a protocol on Twisted's StringTransport (a fake, as a
        user's unit test has: no real socket is one) raises LookupError."""
        from twisted.internet.testing import StringTransport

        protocol = Recorder()
        protocol.makeConnection(StringTransport())
        with self.assertRaises(LookupError) as caught:
            lost(protocol)
        self.assertIn("not by a cleanconn scope", str(caught.exception))

    def test_never_connected(self) -> None:
        """lost() of a protocol that never connected raises TypeError saying
        which protocols it takes."""
        protocol = Recorder()
        with self.assertRaises(TypeError) as caught:
            lost(protocol)
        self.assertEqual(
            str(caught.exception),
            f"lost(): {protocol!r} has no transport: it was never connected. "
            "Pass a protocol of a cleanconn scope (what connected() yields, "
            "port.accept() or port.server_protocol() returns).",
        )

    async def test_cancel(self) -> None:
        """A cancelled lost() fails with CancelledError and is not fired later."""
        async with serving(echo_factory()) as port:
            async with connected(port, CountingFactory(Recorder)) as client:
                waiting = lost(client)
                waiting.cancel()
                self.failureResultOf(waiting, defer.CancelledError)
        # The exit lost the connection; a cancelled Deferred is not fired again.


class OtherCodesClientTests(TestCase):
    async def raw_client_of_an_ended_scope(self) -> Recorder:
        """A client that other code connected to a serving() port, once
        that serving() block has ended."""
        factory = RawClients(Recorder)
        async with serving(echo_factory()) as port:
            reactor.connectTCP("127.0.0.1", port.getHost().port, factory)
            await factory.made()
            server_factory: Any = port.factory
            await server_factory.made()
        client: Recorder = factory.built[0]
        return client

    async def test_exit_waits_for_a_raw_client(self) -> None:
        """serving()'s exit waits for the connectionLost of a client other code made."""
        before = own_readers_writers(reactor)
        client = await self.raw_client_of_an_ended_scope()
        self.assertEqual(client.lost_count, 1)
        self.assertEqual(own_readers_writers(reactor), before)

    async def test_exit_waits_for_a_unix_client(self) -> None:
        """The exit waits for an unbound UNIX client that other code made."""
        factory = RawClients(Recorder)
        async with serving(echo_factory(), unix=True) as port:
            reactor.connectUNIX(port.getHost().name, factory)
            await factory.made()
            server_factory: Any = port.factory
            await server_factory.made()
        self.assertEqual(factory.built[0].lost_count, 1)

    async def test_exit_waits_for_a_tls_client(self) -> None:
        """The exit waits for a TLS client that other code made."""
        factory = RawClients(Echo)
        async with serving(echo_factory(), tls=True) as port:
            assert port.tls is not None
            reactor.connectSSL(
                "127.0.0.1",
                port.getHost().port,
                factory,
                port.tls.client_options("127.0.0.1"),
            )
            await factory.made()
            factory.built[0].transport.write(b"x")
            await factory.built[0].received(1)
        self.assertEqual(factory.built[0].lost_count, 1)

    async def test_treq_persistent_pool(self) -> None:
        """The exit waits for the connection a persistent treq pool keeps open."""
        import treq
        from twisted.web.client import HTTPConnectionPool

        before = own_readers_writers(reactor)
        pool = HTTPConnectionPool(reactor, persistent=True)
        try:
            async with serving(Site(Hello())) as port:
                response = await treq.get(base_url(port) + "/", pool=pool)
                self.assertEqual(await response.content(), b"hello")
            self.assertEqual(own_readers_writers(reactor), before)
        finally:
            await pool.closeCachedConnections()  # the pool's own timers

    async def test_smtp_sendmail(self) -> None:
        """smtp.sendmail() to a serving() ESMTP server leaves the reactor clean."""
        server = MailServer()
        async with clean_reactor(), serving(server) as port:
            await smtp.sendmail(
                "127.0.0.1",
                "alice@example.com",
                ["bob@example.com"],
                b"Subject: hi\r\n\r\nhello\r\n",
                port=port.getHost().port,
            )
        self.assertEqual(len(server.box), 1)
        self.assertIn(b"hello", server.box[0])

    async def test_client_that_stays_open_is_reported_not_aborted(self) -> None:
        """A client ignoring the close is reported by CleanupTimeout, left intact."""
        factory = RawClients(Stubborn)
        with self.assertRaises(CleanupTimeout) as caught:
            async with serving(echo_factory(), timeout=0.2) as port:
                reactor.connectTCP("127.0.0.1", port.getHost().port, factory)
                await factory.made()
                server_factory: Any = port.factory
                await server_factory.made()
        client = factory.built[0]
        try:
            self.assertEqual(client.lost_count, 0)  # still open: not ours to abort
            error = caught.exception
            self.assertEqual(error.aborted, ())
            self.assertEqual(len(error.foreign), 1)
            self.assertIs(error.foreign[0].protocol, Stubborn)
            self.assertIn("other code in this process", str(error))
            self.assertIn("Stubborn", str(error))
        finally:
            client.transport.abortConnection()
            await client.lost

    async def test_wrapped_client_named_by_its_own_protocol(self) -> None:
        """A client end opened through an endpoint and a wrapping factory is
        reported by its own protocol's class, not by a wrapper's."""
        from twisted.internet.endpoints import TCP4ClientEndpoint

        factory = RawClients(Stubborn)
        with self.assertRaises(CleanupTimeout) as caught:
            async with serving(echo_factory(), timeout=0.2) as port:
                endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
                await endpoint.connect(_HalfCloseWrapping(factory))
                await factory.made()
                server_factory: Any = port.factory
                await server_factory.made()
        client = factory.built[0]
        try:
            [report] = caught.exception.foreign
            self.assertIs(report.protocol, Stubborn)
            self.assertEqual(report.side, "client")
            transport = client.transport
            self.assertEqual(
                (report.local, report.peer), (transport.getHost(), transport.getPeer())
            )
        finally:
            client.transport.abortConnection()
            await client.lost

    async def test_paused_client_left_to_the_janitor(self) -> None:
        """A client paused before the exit is left to clean_reactor() to report."""
        from cleanconn import DirtyReactorError

        factory = RawClients(PausedClient)
        with self.assertRaises(DirtyReactorError) as caught:
            async with clean_reactor(), serving(echo_factory()) as port:
                reactor.connectTCP("127.0.0.1", port.getHost().port, factory)
                await factory.made()
                server_factory: Any = port.factory
                await server_factory.made()
        self.assertIn("paused", str(caught.exception))
        self.assertEqual(factory.built[0].lost_count, 1)  # the janitor closed it

    async def test_ipv4_client_of_a_dual_stack_port(self) -> None:
        """The exit waits for an IPv4 client of a port listening on '::'."""
        factory = RawClients(Recorder)
        async with serving(echo_factory(), interface="::") as port:
            reactor.connectTCP("127.0.0.1", port.getHost().port, factory)
            await factory.made()
            server_factory: Any = port.factory
            await server_factory.made()
        self.assertEqual(factory.built[0].lost_count, 1)

    if not has_ipv6():
        test_ipv4_client_of_a_dual_stack_port.skip = "no IPv6"

    async def test_client_transport_left_as_it_was(self) -> None:
        """Once a client other code opened has closed, the exit's hook on its
        transport is gone: the transport is left as it was."""
        client = await self.raw_client_of_an_ended_scope()
        self.assertEqual(client.lost_count, 1)
        self.assertNotIn("connectionLost", vars(client.transport))

    async def test_unhooking_keeps_a_patch_of_the_users(self) -> None:
        """A connectionLost the user patched on the transport is put back."""
        factory = RawClients(Stubborn)
        with self.assertRaises(CleanupTimeout):
            async with serving(timeout=0.2) as port:
                reactor.connectTCP("127.0.0.1", port.getHost().port, factory)
                await factory.made()
                transport: Any = factory.built[0].transport
                patched = transport.connectionLost
                transport.connectionLost = patched  # the user's, on the instance
                await port.accept()
        try:
            self.assertIs(vars(transport)["connectionLost"], patched)
        finally:
            transport.abortConnection()
            await factory.built[0].lost
