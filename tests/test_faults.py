"""
The fault matrix: whatever the code under test does, every exit is bounded,
reports what it had to abort, and leaves nothing on the reactor.

Each test asserts the outcome, a generous upper bound on the exit time
(the scope's timeout plus a margin), and that no connection, port or timer
of ours is left (trial's janitor checks the rest).
"""

from __future__ import annotations

import sys
import time
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.error import (
    ConnectingCancelledError,
    ConnectionAborted,
    ConnectionDone,
    ConnectionRefusedError,
    NoProtocol,
)
from twisted.internet.interfaces import (
    IHalfCloseableProtocol,
    IPullProducer,
    IStreamClientEndpoint,
    IStreamServerEndpoint,
)
from twisted.internet.protocol import ClientFactory, Factory, Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from cleanconn import (
    CleanupTimeout,
    ConnectionRejected,
    ConnectTimeout,
    ProtocolError,
    clean_reactor,
    connected,
    enter_scope,
    serving,
)
from cleanconn._connections import ConnectionSet
from cleanconn._matching import ticket
from cleanconn._reactor import default_reactor
from cleanconn._serving import matcher_of
from cleanconn._teardown import ABORT_GRACE, Closing
from cleanconn._tracked import Tracked, unsent_bytes

from ._helpers import (
    MARGIN,
    CountingFactory,
    Echo,
    Paused,
    Recorder,
    SlowToStop,
    TestCase,
    client_factory,
    echo_factory,
    own_readers_writers,
    turn,
)

EIGHT_MB = b"x" * (8 * 1024 * 1024)


@implementer(IHalfCloseableProtocol)
class HalfCloseable(Recorder):
    """A server that stays open for writing after the client closes."""

    def __init__(self) -> None:
        super().__init__()
        self.read_lost: defer.Deferred[None] = defer.Deferred()

    def readConnectionLost(self) -> None:
        self.read_lost.callback(None)

    def writeConnectionLost(self) -> None:
        pass


class RaisesIn(Recorder):
    """A server whose callback named ``where`` raises ``Oops``."""

    where = ""

    def connectionMade(self) -> None:
        super().connectionMade()
        if self.where == "connectionMade":
            raise Oops("connectionMade")

    def dataReceived(self, data: bytes) -> None:
        super().dataReceived(data)
        if self.where == "dataReceived":
            raise Oops("dataReceived")

    def connectionLost(self, reason: Any = None) -> None:
        super().connectionLost(reason)
        if self.where == "connectionLost":
            raise Oops("connectionLost")


class Oops(Exception):
    """The bug in the code under test."""


def raising_factory(where: str) -> CountingFactory:
    return CountingFactory(type(f"RaisesIn_{where}", (RaisesIn,), {"where": where}))


class Clock:
    """Measures one exit."""

    def __enter__(self) -> Clock:
        self.start = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.monotonic() - self.start


class FaultTestCase(TestCase):
    async def setUp(self) -> None:  # type: ignore[override]
        # cleanconn's own janitor, which sees paused connections too, checks
        # each fault test after it ends (as the test's cleanup).
        await enter_scope(self, clean_reactor())
        self.before = own_readers_writers(reactor)
        self.calls_before = self.timers()

    def assert_clean(self) -> None:
        """Nothing of ours is left: no selectable, no DelayedCall."""
        self.assertEqual(own_readers_writers(reactor) - self.before, set())
        self.assertEqual(self.timers() - self.calls_before, set())


class NeverReadsTests(FaultTestCase):
    async def test_peer_never_reads_is_aborted_and_reported(self) -> None:
        """8 MB to a peer that never reads: aborted at timeout, unsent bytes named."""
        server = CountingFactory(Paused)
        async with serving(server) as port:
            endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
            with Clock() as clock, self.assertRaises(CleanupTimeout) as caught:
                async with connected(endpoint, client_factory(), timeout=0.5) as proto:
                    local = proto.transport.getHost()
                    proto.transport.write(EIGHT_MB)
            self.assertLess(clock.seconds, 0.5 + MARGIN)
            self.assertEqual(proto.lost_count, 1)
        error = caught.exception
        (report,) = error.aborted
        self.assertEqual((report.side, report.protocol), ("client", Recorder))
        self.assertGreater(report.unsent, 0)
        self.assertEqual(report.local, local)
        self.assertIn("not reading", str(error))
        self.assertEqual(server.built[0].lost_count, 1)
        self.assert_clean()

    async def test_paused_server_of_ours_closes_gracefully(self) -> None:
        """A serving() side that paused reading (8 MB unread) is closed, no abort."""
        server = CountingFactory(Paused)
        async with serving(server) as port:
            async with connected(port, client_factory()) as proto:
                proto.transport.write(EIGHT_MB)
            self.assertEqual((proto.lost_count, server.built[0].lost_count), (1, 1))
        self.assert_clean()

    async def test_half_closeable_server_is_closed(self) -> None:
        """A half-closeable server protocol is closed at exit, not left half open."""
        server = CountingFactory(HalfCloseable)
        async with serving(server) as port:
            async with connected(port, client_factory()) as proto:
                pass
        self.assertEqual((proto.lost_count, server.built[0].lost_count), (1, 1))
        self.assert_clean()

    async def test_half_closeable_server_closed_by_serving(self) -> None:
        """serving() closes a half-closeable server that saw only its read side
        end (the client of an endpoint is not its connection to close)."""
        server = CountingFactory(HalfCloseable)
        async with serving(server) as port:
            endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
            async with connected(endpoint, client_factory()) as proto:
                proto.transport.write(b"bye")
            await server.built[0].read_lost
        self.assertEqual(server.built[0].lost_count, 1)
        self.assert_clean()


class RaisesAfterLost(Recorder):
    """Fires ``lost``, then raises: whoever awaits ``lost`` resumes inside
    this connectionLost, before it returns."""

    finished = False

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        super().connectionLost(reason)
        self.finished = True
        raise Oops("connectionLost, after firing lost")


class CallbackErrorTests(FaultTestCase):
    async def test_timeout_and_callback_error(self) -> None:
        """A connection that had to be aborted, and whose callback raised: the
        exit raises the CleanupTimeout, with the ProtocolError attached."""
        async with serving(CountingFactory(Paused)) as port:
            endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
            client = raising_factory("connectionLost")
            with self.assertRaises(CleanupTimeout) as caught:
                async with connected(endpoint, client, timeout=0.5) as proto:
                    proto.transport.write(EIGHT_MB)
        (other,) = caught.exception.cleanconn_cleanup_errors
        self.assertIsInstance(other, ProtocolError)
        self.assertEqual(len(self.flushLoggedErrors(Oops)), 1)
        self.assert_clean()

    async def test_endpoint_client_connection_made_raises(self) -> None:
        """A client connectionMade that raises, through an endpoint, fails the
        entry at once with ProtocolError (the endpoint's own Deferred never
        fires then: the entry does not wait out its timeout)."""

        class Raises(Protocol):
            def connectionMade(self) -> None:
                raise Oops("connectionMade")

        async with serving(echo_factory()) as port:
            endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
            with Clock() as clock, self.assertRaises(ProtocolError) as caught:
                async with connected(endpoint, Factory.forProtocol(Raises), timeout=5):
                    self.fail("the body ran")
        self.assertLess(clock.seconds, 5)
        self.assertIsInstance(caught.exception.__cause__, Oops)
        self.assertEqual(caught.exception.errors[0][1], "connectionMade")
        self.flushLoggedErrors(Oops)
        self.assert_clean()

    async def test_server_connection_made_raises(self) -> None:
        """A server connectionMade that raises fails connected() on entry."""
        async with serving(raising_factory("connectionMade")) as port:
            with self.assertRaises(ProtocolError) as caught:
                async with connected(port, client_factory()):
                    self.fail("the body ran")
        self.assertIsInstance(caught.exception.__cause__, Oops)
        self.assertEqual(caught.exception.errors[0][1], "connectionMade")
        self.assertEqual(len(self.flushLoggedErrors(Oops)), 1)
        self.assert_clean()

    async def test_server_data_received_raises(self) -> None:
        """A server dataReceived that raises is reported by the exit."""
        server = raising_factory("dataReceived")
        with self.assertRaises(ProtocolError) as caught:
            async with serving(server) as port:
                async with connected(port, client_factory()) as proto:
                    proto.transport.write(b"x")
                    await proto.lost
        self.assertEqual(caught.exception.errors[0][1], "dataReceived")
        self.assertEqual(server.built[0].lost_count, 1)
        self.assertEqual(len(self.flushLoggedErrors(Oops)), 1)
        self.assert_clean()

    async def test_exit_waits_for_a_connection_lost_still_running(self) -> None:
        """A body that resumes inside the client's connectionLost: the exit
        waits for it to return, and reports what it raised."""
        client = CountingFactory(RaisesAfterLost)
        with self.assertRaises(ProtocolError) as caught:
            async with serving(echo_factory()) as port:
                async with connected(port, client) as proto:
                    port.server_protocol(proto).transport.loseConnection()
                    await proto.lost
                    self.assertFalse(proto.finished)
        self.assertTrue(client.built[0].finished)
        self.assertEqual(caught.exception.errors[0][1], "connectionLost")
        self.assertEqual(len(self.flushLoggedErrors(Oops)), 1)
        self.assert_clean()

    async def test_server_connection_lost_raises_during_exit(self) -> None:
        """A connectionLost that raises during the exit is reported, nothing leaks."""
        server = raising_factory("connectionLost")
        with self.assertRaises(ProtocolError) as caught:
            async with serving(server) as port:
                async with connected(port, client_factory()):
                    pass
        self.assertIsInstance(caught.exception.__cause__, Oops)
        self.assertEqual(server.built[0].lost_count, 1)
        self.flushLoggedErrors(Oops)
        self.assert_clean()

    async def test_build_protocol_returns_none(self) -> None:
        """A server factory returning None makes entry raise ConnectionRejected."""

        class Refuses(Factory):
            def buildProtocol(self, addr: Any) -> None:
                return None

        factory = client_factory()
        refuses = Refuses()
        async with serving(refuses) as port:
            with self.assertRaises(ConnectionRejected) as caught:
                async with connected(port, factory):
                    self.fail("the body ran")
        self.assertIn("returned None", str(caught.exception))
        self.assertIs(caught.exception.factory, refuses)
        self.assertEqual(caught.exception.address.host, "127.0.0.1")
        self.assertEqual(caught.exception.scope, "connected()")
        self.assertEqual(caught.exception.waiting, "the server side ran connectionMade")
        self.assertEqual(factory.built[0].lost_count, 1)
        self.assert_clean()

    async def test_tls_build_protocol_returns_none(self) -> None:
        """On a TLS port too, a server factory returning None makes entry raise
        ConnectionRejected naming the factory, and leaves nothing behind."""

        class Refuses(Factory):
            def buildProtocol(self, addr: Any) -> None:
                return None

        factory = client_factory()
        async with serving(Refuses(), tls=True) as port:
            with self.assertRaises(ConnectionRejected) as caught:
                async with connected(port, factory):
                    self.fail("the body ran")
        self.assertEqual(
            caught.exception.waiting, "the client's TLS handshake completed"
        )
        self.assertIn("returned None", str(caught.exception))
        self.assertEqual(factory.built[0].lost_count, 1)
        self.assert_clean()


class NotesReturns(Recorder):
    """Notes, in order, when its dataReceived and readConnectionLost return
    and when connectionLost runs (a block awaiting ``received()`` or
    ``read_lost`` resumes inside the callback that fires it)."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[str] = []
        self.read_lost: defer.Deferred[None] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        super().dataReceived(data)
        self.events.append("dataReceived returned")

    def readConnectionLost(self) -> None:
        self.read_lost.callback(None)
        self.events.append("readConnectionLost returned")

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Any = None) -> None:
        self.events.append("connectionLost")
        super().connectionLost(reason)


@implementer(IHalfCloseableProtocol)
class HalfCloseableNotesReturns(NotesReturns):
    """:class:`NotesReturns`, told when the peer closes its side."""


class ExitCloseTests(FaultTestCase):
    """
    How an exit closes a connection: as Twisted does, with the reasons the
    reactor gives, never under one of its protocol's methods (a block that
    ends inside one, by a Deferred it fired, has the connection closed once
    that method has returned), and what connectionLost raises logged as
    the reactor logs it, and reported. (A faster exit that closed idle
    connections during the exit itself broke these; see the benchmarks
    page.)
    """

    async def test_idle_connections_close_cleanly(self) -> None:
        """Both sides of a TCP connection the exit closed are lost once, with
        a clean close's reason. (Over UNIX sockets the side closed second
        may see its peer hang up first: ConnectionLost, as the reactor
        reports it.)"""
        async with serving(echo_factory()) as port:
            async with connected(port, client_factory()) as proto:
                proto.transport.write(b"x")
                await proto.received(1)
                server = port.server_protocol(proto)
            self.assertEqual((proto.lost_count, server.lost_count), (1, 1))
            self.assertIsInstance(proto.reason.value, ConnectionDone)
            self.assertIsInstance(server.reason.value, ConnectionDone)
        self.assert_clean()

    async def test_connection_lost_raising_is_logged_once(self) -> None:
        """A server connectionLost that raises while the exit closes it is
        logged once, and reported; the client is closed all the same."""
        server = raising_factory("connectionLost")
        with self.assertRaises(ProtocolError) as caught:
            async with serving(server) as port:
                async with connected(port, client_factory()) as proto:
                    pass
                self.assertEqual(proto.lost_count, 1)
        self.assertEqual(caught.exception.errors[0][1], "connectionLost")
        self.assertEqual(server.built[0].lost_count, 1)
        self.assertEqual(len(self.flushLoggedErrors(Oops)), 1)
        self.assert_clean()

    async def test_a_producer_holds_the_close(self) -> None:
        """A pull producer registered on the client is asked for more, and
        holds the close (Twisted closes once it unregisters), so the exit
        ends at its deadline by aborting, as before."""
        resumed: list[None] = []

        @implementer(IPullProducer)
        class Producer:
            def resumeProducing(self) -> None:
                resumed.append(None)

            def stopProducing(self) -> None:
                pass

        async with serving(echo_factory()) as port:
            with Clock() as clock, self.assertRaises(CleanupTimeout):
                async with connected(port, client_factory(), timeout=0.3) as proto:
                    proto.transport.registerProducer(Producer(), False)
        self.assertTrue(resumed)
        self.assertLess(clock.seconds, 0.3 + MARGIN)
        self.assert_clean()

    async def test_not_under_the_clients_data_received(self) -> None:
        """A block that ends inside the client's dataReceived (a Deferred it
        fired) does not end the connection under it: connectionLost runs
        after dataReceived has returned."""
        clients = CountingFactory(NotesReturns)
        async with serving(echo_factory()) as port:
            async with connected(port, clients) as proto:
                proto.transport.write(b"x")
                await proto.received(1)
        self.assertEqual(proto.events, ["dataReceived returned", "connectionLost"])
        self.assert_clean()

    async def test_not_under_the_servers_data_received(self) -> None:
        """A block that ends inside the server's dataReceived does not end
        the server side under it."""
        servers = CountingFactory(NotesReturns)
        async with serving(servers) as port:
            async with connected(port, client_factory()) as proto:
                proto.transport.write(b"x")
                await servers.made(1)
                await servers.built[0].received(1)
        self.assertEqual(
            servers.built[0].events, ["dataReceived returned", "connectionLost"]
        )
        self.assert_clean()

    async def test_not_under_read_connection_lost(self) -> None:
        """A block that ends inside a half-closeable server's
        readConnectionLost does not end the server side under it."""
        servers = CountingFactory(HalfCloseableNotesReturns)
        async with serving(servers) as port:
            async with connected(port, client_factory()) as proto:
                await servers.made(1)
                proto.transport.loseWriteConnection()
                await servers.built[0].read_lost
        self.assertEqual(
            servers.built[0].events, ["readConnectionLost returned", "connectionLost"]
        )
        self.assert_clean()

    async def test_not_under_a_timed_call_of_the_protocol(self) -> None:
        """A block that ends inside a protocol method a timer called (not
        the transport) does not end the connection under it: what the
        method writes after firing the Deferred reaches the peer (a plain
        Twisted server, which only sees the end of the stream)."""
        sinks = CountingFactory(Recorder)
        raw = reactor.listenTCP(0, sinks, interface="127.0.0.1")  # type: ignore[arg-type]
        try:

            class WritesAfterFiring(Recorder):
                def fire_then_write(self, fired: defer.Deferred[None]) -> None:
                    fired.callback(None)
                    self.transport.write(b"bye")

            target = f"tcp:127.0.0.1:{raw.getHost().port}"
            async with connected(target, CountingFactory(WritesAfterFiring)) as proto:
                fired: defer.Deferred[None] = defer.Deferred()
                reactor.callLater(0, proto.fire_then_write, fired)
                await fired
            await sinks.built[0].lost
            self.assertEqual(sinks.built[0].data, b"bye")
        finally:
            await defer.maybeDeferred(raw.stopListening)
        self.assert_clean()

    async def test_raised_after_firing_is_the_reason(self) -> None:
        """A block that ends inside a dataReceived that then raises: the
        protocol's connectionLost gets that exception as its reason, as the
        reactor gives it, and it is reported."""

        class RaisesAfterFiring(NotesReturns):
            def dataReceived(self, data: bytes) -> None:
                super().dataReceived(data)
                raise Oops("after firing")

        with self.assertRaises(ProtocolError):
            async with serving(echo_factory()) as port:
                clients = CountingFactory(RaisesAfterFiring)
                async with connected(port, clients) as proto:
                    proto.transport.write(b"x")
                    await proto.received(1)
        self.assertIsInstance(proto.reason.value, Oops)
        self.assertEqual(len(self.flushLoggedErrors(Oops)), 1)
        self.assert_clean()

    async def test_aborted_connection_keeps_the_aborts_reason(self) -> None:
        """A connection the body aborted is lost as aborted, not as closed."""
        async with serving(echo_factory()) as port:
            async with connected(port, client_factory()) as proto:
                proto.transport.abortConnection()
        self.assertIsInstance(proto.reason.value, ConnectionAborted)
        self.assert_clean()


class ClosedInsideTests(FaultTestCase):
    async def test_client_closes_inside_body(self) -> None:
        """A client that closed itself inside the body exits cleanly."""
        async with serving(echo_factory()) as port:
            async with connected(port, client_factory()) as proto:
                proto.transport.loseConnection()
                await proto.lost
            self.assertEqual(port.server_protocol(proto).lost_count, 1)
        self.assert_clean()

    async def test_server_closes_inside_body(self) -> None:
        """A server that closed the connection inside the body exits cleanly."""
        async with serving(echo_factory()) as port:
            async with connected(port, client_factory()) as proto:
                port.server_protocol(proto).transport.loseConnection()
                await proto.lost
            self.assertEqual(port.server_protocol(proto).lost_count, 1)
        self.assert_clean()

    async def test_server_gone_before_exit(self) -> None:
        """A connected() whose server side was aborted before the exit exits cleanly."""
        async with serving(echo_factory()) as port:
            async with connected(port, client_factory()) as proto:
                port.server_protocol(proto).transport.abortConnection()
                await proto.lost
        self.assertEqual(proto.lost_count, 1)
        self.assert_clean()


class ConnectFailureTests(FaultTestCase):
    async def test_refused(self) -> None:
        """A refused connection raises Twisted's error; the body never runs."""
        async with serving(echo_factory()) as port:
            await port.stopListening()
            factory = client_factory()
            with self.assertRaises(ConnectionRefusedError):
                async with connected(port, factory):
                    self.fail("the body ran")
        self.assertEqual(factory.built, [])
        self.assert_clean()

    async def test_connect_cancelled(self) -> None:
        """Cancelling a connect raises ConnectingCancelledError and leaves nothing."""

        async def attempt(port: Any) -> None:
            async with connected(port, client_factory()):
                self.fail("the body ran")

        async with serving(echo_factory()) as port:
            attempt_d = defer.ensureDeferred(attempt(port))
            attempt_d.cancel()
            with self.assertRaises(ConnectingCancelledError):
                await attempt_d
        self.assert_clean()

    async def test_serving_exits_while_clients_connect(self) -> None:
        """serving() exits cleanly while raw clients are still connecting."""
        outcomes: list[defer.Deferred[None]] = []

        class Raw(ClientFactory):
            protocol = Recorder

            def __init__(self) -> None:
                self.done: defer.Deferred[None] = defer.Deferred()
                outcomes.append(self.done)

            def clientConnectionFailed(self, connector: Any, reason: Any) -> None:
                self.done.callback(None)

            def clientConnectionLost(self, connector: Any, reason: Any) -> None:
                self.done.callback(None)

        with Clock() as clock:
            async with serving(echo_factory(), timeout=1) as port:
                for _ in range(20):
                    reactor.connectTCP("127.0.0.1", port.getHost().port, Raw())
        self.assertLess(clock.seconds, 1 + MARGIN)
        await defer.gatherResults(outcomes)
        self.assert_clean()


class CancellationTests(FaultTestCase):
    async def test_body_cancelled(self) -> None:
        """Cancelling the test's Deferred in the body still runs both exits."""
        seen: list[Any] = []
        server_made: defer.Deferred[None] = defer.Deferred()

        async def body() -> None:
            async with serving(echo_factory()) as port:
                async with connected(port, client_factory()) as proto:
                    seen.extend([proto, port.server_protocol(proto)])
                    server_made.callback(None)
                    await defer.Deferred()  # never fires

        running = defer.ensureDeferred(body())
        await server_made
        await turn()  # cancel from outside the body, as trial would
        running.cancel()
        with self.assertRaises(defer.CancelledError):
            await running
        self.assertEqual([p.lost_count for p in seen], [1, 1])
        self.assert_clean()

    async def slow_exit(self, port: Any) -> tuple[defer.Deferred[None], Any]:
        """A connected() to ``port`` (whose server never reads) that has left
        its body and whose exit now waits; and its protocol."""
        exiting: list[Any] = []
        leaving: defer.Deferred[None] = defer.Deferred()

        async def body() -> None:
            endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
            async with connected(endpoint, client_factory(), timeout=60) as proto:
                proto.transport.write(EIGHT_MB)
                exiting.append(proto)
                leaving.callback(None)

        running = defer.ensureDeferred(body())
        await leaving
        await turn()  # the body has ended: its exit is now waiting
        return running, exiting[0]

    async def test_exit_cancelled_twice(self) -> None:
        """Cancelling a slow exit twice still waits for the aborts: both
        connectionLosts ran and nothing is left."""
        async with serving(CountingFactory(Paused)) as port:
            running, proto = await self.slow_exit(port)
            running.cancel()  # the exit aborts and waits for the aborts...
            running.cancel()  # ... and goes on waiting when cancelled again
            with self.assertRaises(defer.CancelledError):
                await running
            self.assertEqual(proto.lost_count, 1)
        self.assert_clean()

    async def test_exit_cancelled(self) -> None:
        """Cancelling a slow exit aborts at once, waits, and raises CancelledError."""
        async with serving(CountingFactory(Paused)) as port:
            running, proto = await self.slow_exit(port)
            with Clock() as clock:
                running.cancel()
                with self.assertRaises(defer.CancelledError):
                    await running
            self.assertLess(clock.seconds, MARGIN)
            self.assertEqual(proto.lost_count, 1)
        self.assert_clean()

    async def test_serving_exit_cancelled_while_the_port_stops(self) -> None:
        """Cancelling a serving() exit that waits for its port still lets the
        port stop (its factory stopped, nothing on the reactor) before
        CancelledError arrives."""
        factory = echo_factory()

        async def scope() -> None:
            async with serving(factory):
                pass

        # Entering and the body run at once: the exit is now waiting for the
        # port, whose stop completes on the next reactor turn.
        running = defer.ensureDeferred(scope())
        self.assertFalse(running.called)
        running.cancel()
        with self.assertRaises(defer.CancelledError):
            await running
        self.assertEqual(factory.numPorts, 0)
        self.assert_clean()

    async def test_body_exception_wins_over_cleanup_timeout(self) -> None:
        """When the body raised, a CleanupTimeout is attached, not raised."""
        server = CountingFactory(Paused)
        boom = RuntimeError("boom")
        async with serving(server) as port:
            endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
            with self.assertRaises(RuntimeError) as caught:
                async with connected(endpoint, client_factory(), timeout=0.5) as proto:
                    proto.transport.write(EIGHT_MB)
                    raise boom
        self.assertIs(caught.exception, boom)
        (cleanup,) = boom.cleanconn_cleanup_errors
        self.assertIsInstance(cleanup, CleanupTimeout)
        if sys.version_info >= (3, 11):  # add_note() exists
            self.assertIn("CleanupTimeout", boom.__notes__[0])
        self.assert_clean()

    async def test_healthy_close_needs_no_abort(self) -> None:
        """A healthy close raises nothing and never waits for the deadline."""
        async with serving(echo_factory(), timeout=600) as port:
            async with connected(port, client_factory(), timeout=600) as proto:
                proto.transport.write(b"x")
                await proto.received(1)
        self.assertEqual(proto.lost_count, 1)
        self.assertTrue(proto.reason.check(ConnectionDone))
        self.assert_clean()


@implementer(IStreamClientEndpoint)
class NeverConnects:
    """
    An endpoint whose connect never completes. Fault injection: a connect
    that hangs cannot be produced deterministically on loopback.
    """

    def connect(self, factory: Any) -> defer.Deferred[Any]:
        return defer.Deferred()


class EntryTests(FaultTestCase):
    async def test_server_that_never_accepts(self) -> None:
        """If the server side never shows up, entry raises ConnectTimeout, and
        the accept that comes late breaks nothing."""
        server = echo_factory()
        async with serving(server) as port:
            port._port.stopReading()  # fault injection: hold every accept
            with Clock() as clock, self.assertRaises(ConnectTimeout) as caught:
                async with connected(port, client_factory(), timeout=0.3):
                    self.fail("the body ran")
            self.assertLess(clock.seconds, 0.3 + MARGIN)
            error = caught.exception
            self.assertEqual(error.waiting, "the server side ran connectionMade")
            self.assertEqual((error.scope, error.timeout), ("connected()", 0.3))
            port._port.startReading()
            await server.made()  # the late accept must not break anything
        self.assertEqual(server.built[0].lost_count, 1)
        self.assert_clean()

    async def test_endpoint_that_never_connects(self) -> None:
        """An endpoint connect that hangs is cancelled at timeout: ConnectTimeout."""
        with Clock() as clock, self.assertRaises(ConnectTimeout) as caught:
            async with connected(NeverConnects(), client_factory(), timeout=0.3):
                self.fail("the body ran")
        self.assertLess(clock.seconds, 0.3 + MARGIN)
        self.assertIn("timeout=0.3", str(caught.exception))
        self.assert_clean()

    async def test_client_factory_returns_none(self) -> None:
        """A client factory that builds no protocol fails entry with NoProtocol."""

        class Builds_nothing(Factory):
            def buildProtocol(self, addr: Any) -> None:
                return None

        async with serving(echo_factory()) as port:
            with self.assertRaises(NoProtocol):
                async with connected(port, Builds_nothing()):
                    self.fail("the body ran")
        self.assert_clean()

    async def test_client_connection_made_raises(self) -> None:
        """A client connectionMade that raises fails entry; the body never runs."""
        async with serving(echo_factory()) as port:
            with self.assertRaises(ProtocolError) as caught:
                async with connected(port, raising_factory("connectionMade")):
                    self.fail("the body ran")
        self.assertEqual(caught.exception.errors[0][0].side, "client")
        self.flushLoggedErrors(Oops)
        self.assert_clean()

    async def test_reused_client_port_is_not_matched_to_a_dead_server(self) -> None:
        """A server side lost before a client began connecting is never its peer."""
        server = echo_factory()
        async with serving(server) as port:
            # A raw client: its server side is never claimed by connected().
            endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
            old = await endpoint.connect(client_factory())
            await server.made()
            reused = old.transport.getHost()
            old.transport.loseConnection()
            await server.built[0].lost
            # Fault injection: the kernel reuses a client port on loopback,
            # but not on demand, so a new client with the old address is made.
            new = Tracked(Recorder(), "client", ConnectionSet())
            new.transport = _Addressed(reused)
            found = matcher_of(port).claim(new, ticket())
            self.assertIsInstance(found, defer.Deferred)
            assert isinstance(found, defer.Deferred)
            found.cancel()
            self.failureResultOf(found, defer.CancelledError)
        self.assert_clean()

    def test_connection_lost_inside_lose_connection(self) -> None:
        """A connection lost inside loseConnection() itself needs no wait, and
        no deadline is left on the reactor for it."""
        # Fault injection: no real Twisted transport loses its connection
        # synchronously, but a transport from a test double may.
        conn = Tracked(Recorder(), "client", ConnectionSet())

        class LostAtOnce:
            def loseConnection(self) -> None:
                conn.connectionLost(Failure(ConnectionDone()))

        conn.makeConnection(LostAtOnce())  # type: ignore[arg-type]
        closing = Closing(default_reactor(None), "connected()", 60.0)
        closing.close([conn])
        self.assertEqual(closing.pending, 0)
        self.assertEqual(self.successResultOf(defer.ensureDeferred(closing.wait())), [])
        self.assertTrue(conn.lost)
        self.assert_clean()


@implementer(IStreamServerEndpoint)
class _SlowToStopEndpoint:
    """Listens on 127.0.0.1; its ports report stopping ``delay`` s late."""

    def __init__(self, delay: float) -> None:
        self._delay = delay
        self.ports: list[SlowToStop] = []

    def listen(self, factory: Any) -> defer.Deferred[Any]:
        endpoint = TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
        listening: defer.Deferred[Any] = endpoint.listen(factory)
        return listening.addCallback(self._made)

    def _made(self, port: Any) -> SlowToStop:
        self.ports.append(SlowToStop(port, self._delay))
        return self.ports[-1]


class _FailsToStop(SlowToStop):
    """A real listening port whose stopListening() stops it, then fails
    (fault injection: a Twisted TCP port's stop never fails)."""

    def stopListening(self) -> defer.Deferred[None]:
        def failed(_: object) -> None:
            raise Oops("stop failed")

        return defer.maybeDeferred(self._port.stopListening).addCallback(failed)


@implementer(IStreamServerEndpoint)
class _FailsToStopEndpoint(_SlowToStopEndpoint):
    """Listens on 127.0.0.1; its ports fail to report stopping."""

    def _made(self, port: Any) -> SlowToStop:
        self.ports.append(_FailsToStop(port, 0))
        return self.ports[-1]


class UnabortableTests(FaultTestCase):
    async def test_abort_that_never_completes(self) -> None:
        """A connection whose abort never leads to connectionLost ends the
        exit ABORT_GRACE after the abort, named as unclosed, not waited for."""
        # A fault no real socket produces: the real client transport is made
        # deaf (it reads nothing, so it never sees the server's close) and
        # its close and abort do nothing, until the test undoes that.
        async with serving(echo_factory()) as port:
            with Clock() as clock, self.assertRaises(CleanupTimeout) as caught:
                async with connected(port, client_factory(), timeout=0.3) as proto:
                    transport = proto.transport
                    client, server = transport.getHost(), transport.getPeer()
                    transport.stopReading()
                    transport.loseConnection = lambda *args: None
                    transport.abortConnection = lambda: None
            del transport.loseConnection, transport.abortConnection
            self.assertEqual(proto.lost_count, 0)
            transport.abortConnection()
            await proto.lost
        # It waited the grace out, and no longer than that: a timer cannot
        # fire early, so the lower bound is exact.
        self.assertGreaterEqual(clock.seconds, 0.3 + ABORT_GRACE)
        self.assertLess(clock.seconds, 0.3 + ABORT_GRACE + MARGIN)
        error = caught.exception
        [report] = error.unclosed
        self.assertEqual(report.side, "client")
        self.assertEqual((report.local, report.peer), (client, server))
        self.assertIn("did not close even when aborted", str(error))
        self.assert_clean()

    async def test_abort_that_raises(self) -> None:
        """An abort that raises is reported, not raised: the exit still ends
        ABORT_GRACE later with CleanupTimeout naming the connection."""
        # A fault no real socket produces, injected on the real transport
        # as above; here its abort raises.
        async with serving(echo_factory()) as port:
            with Clock() as clock, self.assertRaises(CleanupTimeout) as caught:
                async with connected(port, client_factory(), timeout=0.3) as proto:
                    transport = proto.transport
                    transport.stopReading()
                    transport.loseConnection = lambda *args: None
                    transport.abortConnection = _raises
            del transport.loseConnection, transport.abortConnection
            transport.abortConnection()
            await proto.lost
        # It waited the grace out, and no longer than that: a timer cannot
        # fire early, so the lower bound is exact.
        self.assertGreaterEqual(clock.seconds, 0.3 + ABORT_GRACE)
        self.assertLess(clock.seconds, 0.3 + ABORT_GRACE + MARGIN)
        [report] = caught.exception.unclosed
        self.assertEqual(report.side, "client")
        self.assert_clean()


def _raises() -> None:
    raise OSError("the abort failed")


class UnsentBytesTests(FaultTestCase):
    async def test_a_write_not_yet_flushed_is_unsent_to_the_byte(self) -> None:
        """What a report calls unsent counts, to the byte, what was written to
        a real TCP transport and not yet handed to the kernel."""
        async with serving(echo_factory()) as port:
            async with connected(port, client_factory()) as proto:
                transport = proto.transport
                before = unsent_bytes(transport)
                # The reactor hands it to the kernel on its next turn, not now.
                transport.write(b"x" * 1000)
                self.assertEqual((before, unsent_bytes(transport)), (0, 1000))
                await proto.received(1000)
        self.assert_clean()


class SlowStopTests(FaultTestCase):
    async def test_port_that_stops_within_the_grace_period(self) -> None:
        """A port that stops after the deadline but within the abort grace,
        with nothing to abort, ends the exit cleanly: nothing was late for good."""
        with Clock() as clock:
            async with serving(echo_factory(), _SlowToStopEndpoint(0.6), timeout=0.3):
                pass
        self.assertLess(clock.seconds, 0.3 + MARGIN)
        self.assert_clean()

    async def test_port_that_never_reports_stopping(self) -> None:
        """A port whose stop never reports is named by CleanupTimeout."""
        endpoint = _SlowToStopEndpoint(60)
        with self.assertRaises(CleanupTimeout) as caught:
            async with serving(echo_factory(), endpoint, timeout=0.3):
                pass
        endpoint.ports[0].report.cancel()  # the fake's own late report
        self.assertIsNotNone(caught.exception.port)
        self.assertIn("did not report stopping", str(caught.exception))

    async def test_port_whose_stop_fails(self) -> None:
        """A port whose stop fails: stopListening() fails with its error each
        time it is asked, and the exit raises it."""
        with self.assertRaises(Oops) as caught:
            async with serving(echo_factory(), _FailsToStopEndpoint(0)) as port:
                with self.assertRaises(Oops):
                    await port.stopListening()
                self.failureResultOf(port.stopListening(), Oops)
        self.assertEqual(str(caught.exception), "stop failed")
        self.assert_clean()


class _Addressed:
    def __init__(self, address: Any) -> None:
        self.address = address

    def getHost(self) -> Any:
        return self.address


class BadArgumentTests(TestCase):
    def test_serving_needs_a_factory(self) -> None:
        """serving(protocol class) says to use Factory.forProtocol."""
        with self.assertRaises(TypeError) as caught:
            serving(Echo)  # type: ignore[call-overload]
        self.assertIn("Factory.forProtocol(Echo)", str(caught.exception))

    def test_connected_needs_a_factory(self) -> None:
        """connected(target, protocol instance) is a TypeError naming the fix."""
        with self.assertRaises(TypeError) as caught:
            connected("tcp:127.0.0.1:1", Recorder())  # type: ignore[call-overload]
        self.assertIn("protocol instance", str(caught.exception))

    def test_connected_rejects_a_foreign_port(self) -> None:
        """A listening port not made by serving() is refused with what to do."""
        port = reactor.listenTCP(0, echo_factory(), interface="127.0.0.1")  # type: ignore[arg-type]
        self.addCleanup(port.stopListening)
        with self.assertRaises(TypeError) as caught:
            connected(port, client_factory())  # type: ignore[call-overload]
        self.assertIn("not made by serving()", str(caught.exception))

    def test_negative_timeout(self) -> None:
        """A negative timeout is a ValueError."""
        with self.assertRaises(ValueError):
            serving(echo_factory(), timeout=-1)

    def test_zero_timeout(self) -> None:
        """A zero timeout, which would abort every exit, is a ValueError."""
        with self.assertRaises(ValueError):
            connected("tcp:127.0.0.1:1", client_factory(), timeout=0)

    def test_timeout_must_be_a_number(self) -> None:
        """A non-number timeout is a TypeError."""
        with self.assertRaises(TypeError):
            serving(echo_factory(), timeout="5")  # type: ignore[call-overload]

    def test_bad_endpoint(self) -> None:
        """An endpoint that is neither string nor endpoint is a TypeError."""
        with self.assertRaises(TypeError):
            serving(echo_factory(), 8080)  # type: ignore[call-overload]

    def test_two_places_to_listen(self) -> None:
        """endpoint and unix= together are a TypeError."""
        with self.assertRaises(TypeError):
            serving(echo_factory(), "tcp:0", unix=True)

    def test_connected_tls_must_be_client_options(self) -> None:
        """tls= that is not client TLS options is a TypeError naming them."""
        with self.assertRaises(TypeError) as caught:
            connected("tcp:127.0.0.1:1", client_factory(), tls=True)  # type: ignore[call-overload]
        self.assertIn("IOpenSSLClientConnectionCreator", str(caught.exception))

    def test_connected_to_something_else(self) -> None:
        """A target that is no port, endpoint or string is a TypeError."""
        with self.assertRaises(TypeError) as caught:
            connected(8080, client_factory())  # type: ignore[call-overload]
        self.assertIn("got 8080.", str(caught.exception))
        self.assertNotIn("not made by serving()", str(caught.exception))

    def test_ipv6_host_and_port_is_no_endpoint_string(self) -> None:
        """'[::1]:8080' is a ValueError that shows the tcp endpoint string."""
        with self.assertRaises(ValueError) as caught:
            connected("[::1]:8080", client_factory())
        self.assertIn(r"write 'tcp:\:\:1:8080'", str(caught.exception))

    def test_endpoint_string_of_no_kind(self) -> None:
        """A string that names no endpoint kind is a ValueError with examples."""
        with self.assertRaises(ValueError) as caught:
            connected("nowhere", client_factory())
        self.assertNotIn("write 'tcp:", str(caught.exception))
        self.assertIn("'tcp:127.0.0.1:8080'", str(caught.exception))

    async def test_connected_after_the_serving_block(self) -> None:
        """connected() to the port of a serving() block that has ended is a
        ValueError saying to connect inside the block."""
        async with serving(echo_factory()) as port:
            pass
        with self.assertRaises(ValueError) as caught:
            async with connected(port, client_factory()):
                self.fail("the body ran")
        self.assertIn("connect inside the serving() block", str(caught.exception))

    def test_interface_must_be_an_address(self) -> None:
        """serving(interface=) takes an IP address literal, not a name."""
        with self.assertRaises(ValueError) as caught:
            serving(echo_factory(), interface="localhost")
        self.assertIn("IP address literal", str(caught.exception))

    def test_unix_must_be_true_or_a_path(self) -> None:
        """serving(unix=) takes True or a path."""
        with self.assertRaises(TypeError) as caught:
            serving(echo_factory(), unix=1)  # type: ignore[call-overload]
        self.assertIn("unix must be True", str(caught.exception))

    def test_tls_must_be_true_or_a_ca(self) -> None:
        """serving(tls=) takes True or a ThrowawayCA."""
        with self.assertRaises(TypeError) as caught:
            serving(echo_factory(), tls="yes")  # type: ignore[call-overload]
        self.assertIn(
            "tls must be True or a cleanconn.ThrowawayCA", str(caught.exception)
        )

    def test_serving_something_else(self) -> None:
        """serving() of what is no factory at all says what it needs."""
        with self.assertRaises(TypeError) as caught:
            serving(42)  # type: ignore[call-overload]
        self.assertTrue(str(caught.exception).endswith("got 42."))
