"""
The edges of the scopes: what they do with a reactor, a factory, a peer or
a user mistake they did not expect. Each error must say what went wrong and
what to do, and leave nothing behind.
"""

from __future__ import annotations

import contextlib
import gc
import os
import resource
import socket
import sys
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.endpoints import ProcessEndpoint, TCP4ClientEndpoint
from twisted.internet.error import ConnectError, ConnectingCancelledError, NoProtocol
from twisted.internet.protocol import ClientFactory, DatagramProtocol, Factory, Protocol
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from cleanconn import (
    CleanupTimeout,
    ConnectionRejected,
    ConnectTimeout,
    ReactorNotRunning,
    base_url,
    clean_reactor,
    connected,
    connected_many,
    http_client,
    serving,
)

from ._helpers import (
    MARGIN,
    CountingFactory,
    Paused,
    Recorder,
    client_factory,
    echo_factory,
    full_serving_port,
    turn,
)
from .test_faults import Clock, FaultTestCase


class Oops(Exception):
    """What a broken factory raises."""


class RaisingFactory(Factory):
    """A server factory whose buildProtocol raises."""

    def buildProtocol(self, addr: Any) -> Protocol:
        raise Oops("no protocol for you")


class PausesAtOnce(Protocol):
    """A server that pauses reading in connectionMade."""

    def connectionMade(self) -> None:
        self.transport.pauseProducing()


class ReactorTests(FaultTestCase):
    def test_reactor_not_running(self) -> None:
        """A reactor that is not running fails entry at once, listening on nothing."""
        from twisted.internet.selectreactor import SelectReactor

        other = SelectReactor()
        waker = other.waker
        self.addCleanup(waker.connectionLost, None)
        entering = defer.ensureDeferred(
            serving(echo_factory(), reactor=other).__aenter__()
        )
        error = self.failureResultOf(entering, ReactorNotRunning).value
        self.assertIn("not running", str(error))
        self.assertIs(error.reactor, other)
        self.assertEqual(set(other.getReaders()), {waker})


class FactoryTests(FaultTestCase):
    async def test_server_build_protocol_raises(self) -> None:
        """A server factory that raises fails entry at once with
        ConnectionRejected naming it and chaining the exception."""
        factory = RaisingFactory()
        async with serving(factory) as port:
            with Clock() as clock, self.assertRaises(ConnectionRejected) as caught:
                async with connected(port, client_factory(), timeout=30):
                    self.fail("the body ran")
        self.assertLess(clock.seconds, MARGIN)
        error = caught.exception
        self.assertIsInstance(error.error, Oops)
        self.assertIs(error.__cause__, error.error)
        self.assertIs(error.factory, factory)
        self.assertIn("raised Oops", str(error))
        self.assertEqual(len(self.flushLoggedErrors(Oops)), 1)
        self.assert_clean()

    async def test_client_build_protocol_raises(self) -> None:
        """A client factory that raises fails entry with Twisted's
        ConnectError carrying its exception, and leaves nothing behind."""
        async with serving(echo_factory()) as port:
            with self.assertRaises(ConnectError) as caught:
                async with connected(port, RaisingFactory()):
                    self.fail("the body ran")
        self.assertIn("no protocol for you", str(caught.exception))
        self.flushLoggedErrors(Oops)
        self.assert_clean()

    async def test_client_factory_none_names_the_factory(self) -> None:
        """A client factory returning None fails entry with NoProtocol naming it."""

        class BuildsNothing(Factory):
            def buildProtocol(self, addr: Any) -> None:
                return None

        factory = BuildsNothing()
        async with serving(echo_factory()) as port:
            with self.assertRaises(NoProtocol) as caught:
                async with connected(port, factory):
                    self.fail("the body ran")
        self.assertIn(repr(factory), str(caught.exception))
        self.assertIn("returned None", str(caught.exception))
        self.assert_clean()


def _full_listener() -> tuple[socket.socket, socket.socket, int]:
    """
    A loopback port whose accept queue is full (backlog 0, one client in
    it, nothing accepting): a further connect never completes.
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port))
    return listener, filler, port


class HangingConnectTests(FaultTestCase):
    async def test_connect_timeout_leaves_nothing(self) -> None:
        """A ConnectTimeout for an endpoint target is raised only once the
        connect attempt is gone: the reactor is clean when it arrives."""
        listener, filler, port = _full_listener()
        self.addCleanup(listener.close)
        self.addCleanup(filler.close)
        async with clean_reactor():
            with self.assertRaises(ConnectTimeout):
                async with connected(
                    f"tcp:127.0.0.1:{port}", client_factory(), timeout=0.3
                ):
                    self.fail("the body ran")
        self.assert_clean()

    async def test_connect_timeout_names_the_address(self) -> None:
        """A ConnectTimeout for an endpoint string names the address, not an object."""
        listener, filler, port = _full_listener()
        self.addCleanup(listener.close)
        self.addCleanup(filler.close)
        target = f"tcp:127.0.0.1:{port}"
        with self.assertRaises(ConnectTimeout) as caught:
            async with connected(target, client_factory(), timeout=0.3):
                self.fail("the body ran")
        self.assertIn(repr(target), str(caught.exception))
        self.assertNotIn("object at 0x", str(caught.exception))

    async def test_connect_timeout_names_the_endpoint(self) -> None:
        """A ConnectTimeout for an endpoint object names its kind and address."""
        listener, filler, port = _full_listener()
        self.addCleanup(listener.close)
        self.addCleanup(filler.close)
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        with self.assertRaises(ConnectTimeout) as caught:
            async with connected(endpoint, client_factory(), timeout=0.3):
                self.fail("the body ran")
        self.assertIn(f"TCP4ClientEndpoint to 127.0.0.1:{port}", str(caught.exception))
        self.assert_clean()

    async def test_connect_to_a_full_serving_port(self) -> None:
        """A connect to a serving() port whose accept queue is full gives up
        at the timeout: ConnectTimeout names the port, and nothing is left."""
        async with full_serving_port() as port:
            async with clean_reactor():
                with self.assertRaises(ConnectTimeout) as caught:
                    async with connected(port, client_factory(), timeout=0.3):
                        self.fail("the body ran")
        self.assertIn(f"the connection to {port!r} was made", str(caught.exception))
        self.assert_clean()

    async def test_server_side_that_never_comes(self) -> None:
        """A client connected to a port that never accepts it: ConnectTimeout
        says what the entry waited for and names the client's address."""
        async with serving(echo_factory()) as port:
            port._port.stopReading()  # fault injection: hold every accept
            with self.assertRaises(ConnectTimeout) as caught:
                async with connected(port, client_factory(), timeout=0.3):
                    self.fail("the body ran")
            port._port.startReading()
        error = caught.exception
        self.assertEqual(error.waiting, "the server side ran connectionMade")
        self.assertEqual(error.address.host, "127.0.0.1")
        self.assertNotEqual(error.address.port, port.getHost().port)
        self.assert_clean()

    async def test_cancelled_connect_to_a_full_serving_port(self) -> None:
        """An entry cancelled while its connect to a serving() port hangs
        raises Twisted's ConnectingCancelledError once the connect is gone:
        a janitor that ends with it finds the reactor clean."""
        async with full_serving_port() as port:

            async def enter() -> None:
                async with clean_reactor(), connected(port, client_factory()):
                    self.fail("the body ran")

            entering = defer.ensureDeferred(enter())
            await turn()  # the connect is under way
            entering.cancel()
            with self.assertRaises(ConnectingCancelledError) as caught:
                await entering
        self.assertEqual(getattr(caught.exception, "cleanconn_cleanup_errors", []), [])
        self.assert_clean()

    async def test_connect_cancelled_in_its_first_turn(self) -> None:
        """An entry cancelled in the turn its connect starts leaves nothing,
        not even Twisted's zero-delay call that starts the connect, when
        its failure arrives."""
        async with serving(echo_factory()) as port:

            async def enter() -> None:
                async with clean_reactor(), connected(port, client_factory()):
                    self.fail("the body ran")

            entering = defer.ensureDeferred(enter())
            entering.cancel()
            with self.assertRaises(ConnectingCancelledError) as caught:
                await entering
        self.assertEqual(getattr(caught.exception, "cleanconn_cleanup_errors", []), [])
        self.assert_clean()

    async def test_entry_cancelled_as_the_connection_is_made(self) -> None:
        """An entry cancelled from the client's connectionMade (a race it
        lost) fails with the cancel, and its block never runs."""
        made: defer.Deferred[None] = defer.Deferred()

        class Announces(Protocol):
            def connectionMade(self) -> None:
                made.callback(None)

        ran: list[bool] = []
        async with serving(echo_factory()) as port:

            async def enter() -> None:
                async with connected(port, Factory.forProtocol(Announces)):
                    ran.append(True)

            entering = defer.ensureDeferred(enter())
            made.addCallback(lambda _: entering.cancel())
            with self.assertRaises(ConnectingCancelledError):
                await entering
        self.assertEqual(ran, [])
        self.assert_clean()

    async def test_entry_cancelled_from_the_client_build_protocol(self) -> None:
        """An entry cancelled from the client factory's buildProtocol closes
        the connection being made before its failure arrives: the client's
        connectionLost has run, and nothing is left."""
        built: list[Protocol] = []
        lost: list[object] = []

        class Records(Protocol):
            def connectionLost(self, reason: object = None) -> None:
                lost.append(reason)

        class CancelsAsItBuilds(ClientFactory):
            def buildProtocol(self, addr: object) -> Protocol:
                entering.cancel()
                built.append(Records())
                return built[-1]

        async with serving(echo_factory()) as port:

            async def enter() -> None:
                async with clean_reactor(), connected(port, CancelsAsItBuilds()):
                    self.fail("the body ran")

            entering = defer.ensureDeferred(enter())
            with self.assertRaises(ConnectingCancelledError) as caught:
                await entering
            self.assertEqual((len(built), len(lost)), (1, 1))
        self.assertEqual(getattr(caught.exception, "cleanconn_cleanup_errors", []), [])
        self.assert_clean()

    async def test_entry_cancelled_twice_from_the_client_build_protocol(self) -> None:
        """A second cancel from the same buildProtocol (of the task awaiting
        the entry) lands in the exit's first turn, and does not cut it
        short: the connection being made is closed all the same."""
        built: list[Protocol] = []
        lost: list[object] = []

        class Records(Protocol):
            def connectionLost(self, reason: object = None) -> None:
                lost.append(reason)

        class CancelsBoth(ClientFactory):
            def buildProtocol(self, addr: object) -> Protocol:
                entering.cancel()
                awaiting.cancel()
                built.append(Records())
                return built[-1]

        async with serving(echo_factory()) as port:

            async def enter() -> None:
                async with connected(port, CancelsBoth()):
                    self.fail("the body ran")

            async def await_it() -> None:
                async with clean_reactor():
                    await entering

            entering = defer.ensureDeferred(enter())
            awaiting = defer.ensureDeferred(await_it())
            with self.assertRaises(ConnectingCancelledError) as caught:
                await awaiting
            self.assertEqual((len(built), len(lost)), (1, 1))
        # The second cancel reached the exit's wait: noted, as any cancel
        # of an exit's wait is, on the entry's exception.
        (noted,) = caught.exception.cleanconn_cleanup_errors
        self.assertIsInstance(noted, defer.CancelledError)
        self.assert_clean()

    async def test_connect_timeout_when_stop_factory_raises(self) -> None:
        """A connect that times out raises ConnectTimeout on time even when
        the client factory's stopFactory() raises (which is logged)."""

        class StopRaises(ClientFactory):
            protocol = Protocol

            def stopFactory(self) -> None:
                raise ZeroDivisionError("stopFactory failed")

        async with full_serving_port() as port:
            with Clock() as clock, self.assertRaises(ConnectTimeout):
                async with connected(port, StopRaises(), timeout=0.3):
                    self.fail("the body ran")
        self.assertLess(clock.seconds, 0.3 + MARGIN)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assert_clean()

    async def test_connected_many_to_a_full_serving_port(self) -> None:
        """connected_many() to a serving() port whose accept queue is full
        gives up at its one deadline: ConnectTimeout says how many clients
        connected, and nothing is left."""
        async with full_serving_port() as port:
            async with clean_reactor():
                with self.assertRaises(ConnectTimeout) as caught:
                    async with connected_many(port, client_factory(), 3, timeout=0.3):
                        self.fail("the body ran")
        self.assertIn("all 3 clients connected (0 did)", str(caught.exception))
        self.assert_clean()


class KernelBufferFullTests(FaultTestCase):
    async def test_close_blocked_by_a_full_socket_buffer(self) -> None:
        """A client whose socket buffer is full (Twisted's own is empty) to a
        server that never reads: the exit still ends at its deadline."""
        async with serving(CountingFactory(Paused)) as port:
            target = f"tcp:127.0.0.1:{port.getHost().port}"
            with Clock() as clock, self.assertRaises(CleanupTimeout):
                async with connected(target, client_factory(), timeout=0.5) as proto:
                    # Fault injection: fill the kernel's buffer around Twisted,
                    # so that nothing is left in Twisted's and the socket is
                    # not writable (as a long write to a paused peer ends).
                    sock = proto.transport.socket
                    with contextlib.suppress(BlockingIOError):
                        while True:
                            sock.send(b"x" * 65536)
        self.assertLess(clock.seconds, 0.5 + MARGIN)
        self.assert_clean()


class OutOfDescriptorsTests(FaultTestCase):
    async def test_connected_many_under_emfile(self) -> None:
        """When file descriptors run out during connected_many(), entry fails
        and nothing of its connects is left on the reactor when it does."""
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        await turn()  # the reactor runs (starting it opens pipes of its own)
        used = len(os.listdir("/proc/self/fd"))
        async with serving(echo_factory()) as port:
            # Fault injection: a process limit, to run out on demand.
            resource.setrlimit(resource.RLIMIT_NOFILE, (used + 30, hard))
            try:
                async with clean_reactor():
                    with self.assertRaises(ConnectError):
                        async with connected_many(port, client_factory(), 100):
                            self.fail("the body ran")
            finally:
                resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        self.assert_clean()


class ProcessTests(FaultTestCase):
    async def test_child_that_ignores_eof_is_killed(self) -> None:
        """A child process that ignores the end of its input is killed at the
        deadline, waited for, and reported truthfully as closed."""
        endpoint = ProcessEndpoint(
            reactor,
            sys.executable,
            [sys.executable, "-c", "import time; time.sleep(60)"],
        )
        factory = CountingFactory(Recorder)
        with Clock() as clock, self.assertRaises(CleanupTimeout) as caught:
            async with connected(endpoint, factory, timeout=0.5):
                pass
        self.assertLess(clock.seconds, 0.5 + MARGIN)
        error = caught.exception
        self.assertEqual((len(error.aborted), error.unclosed), (1, ()))
        self.assertIn("All of them are closed now", str(error))
        self.assertEqual(factory.built[0].lost_count, 1)
        self.assert_clean()


class TLSTests(FaultTestCase):
    async def test_server_paused_in_connection_made(self) -> None:
        """A TLS server that pauses in connectionMade: the ConnectTimeout
        says it paused, not that it is slow."""
        async with serving(Factory.forProtocol(PausesAtOnce), tls=True) as port:
            with self.assertRaises(ConnectTimeout) as caught:
                async with connected(port, client_factory(), timeout=0.5):
                    self.fail("the body ran")
        self.assertIn("paused reading", str(caught.exception))
        self.assert_clean()


class Never(Resource):
    """Never answers."""

    isLeaf = True

    def render_GET(self, request: Request) -> Any:
        return NOT_DONE_YET


class HTTPTests(FaultTestCase):
    async def test_request_let_go_is_not_logged_later(self) -> None:
        """A request let go at http_client()'s exit is never logged later as
        an unhandled error (it would land in whatever test runs then)."""
        async with serving(Site(Never())) as port:
            async with http_client(port) as client:
                client.get(base_url(port))
                await turn()
        gc.collect()
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assert_clean()


class MessageTests(FaultTestCase):
    def test_host_port_target(self) -> None:
        """'127.0.0.1:PORT' as a target says to write 'tcp:127.0.0.1:PORT'."""
        with self.assertRaises(ValueError) as caught:
            connected("127.0.0.1:8080", client_factory())
        self.assertIn("'tcp:127.0.0.1:8080'", str(caught.exception))

    def test_plain_with(self) -> None:
        """A scope used with plain `with` says to use `async with`, and where."""
        with self.assertRaises(TypeError) as caught:
            with serving(echo_factory()):
                self.fail("the body ran")
        self.assertEqual(
            str(caught.exception),
            "serving() is an async context manager: use `async with "
            "serving(...)` inside an `async def` that runs under trial, "
            "pytest-twisted, or twisted.internet.defer.ensureDeferred "
            "(task.react), not a plain `with`.",
        )

    def test_datagram_protocol(self) -> None:
        """A DatagramProtocol passed to serving() says UDP is not a stream."""
        with self.assertRaises(TypeError) as caught:
            serving(DatagramProtocol())  # type: ignore[call-overload]
        self.assertIn("UDP is not a stream transport", str(caught.exception))

    def test_empty_unix_path(self) -> None:
        """serving(unix='') is an error, not a TCP port."""
        with self.assertRaises(ValueError) as caught:
            serving(echo_factory(), unix="")
        self.assertIn("unix=True", str(caught.exception))

    async def test_exit_without_entering(self) -> None:
        """__aexit__ without entering says the scope was never entered."""
        scope = serving(echo_factory())
        with self.assertRaises(RuntimeError) as caught:
            await scope.__aexit__(None, None, None)
        self.assertIn("never entered", str(caught.exception))

    async def test_transport_names_the_users_protocol(self) -> None:
        """Twisted's repr of a connection (as trial's janitor prints it), its
        log prefix and the port's repr name the user's protocol and factory."""
        factory = echo_factory()
        async with serving(factory) as port:
            async with connected(port, client_factory()) as proto:
                server = port.server_protocol(proto)
                described = repr(server.transport) + repr(port._port)
                described += server.transport.logPrefix()
        self.assertIn("Echo", described)
        self.assertIn("CountingFactory", described)
        self.assertNotIn("Tracked", described)
        self.assertNotIn("cleanconn", described)

    async def test_server_protocol_of_an_own_endpoint_client(self) -> None:
        """server_protocol() finds the server side of a client connected with
        the user's own endpoint, by its address."""
        server = echo_factory()
        async with serving(server) as port:
            endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
            async with connected(endpoint, client_factory()) as proto:
                await server.made()
                self.assertIs(port.server_protocol(proto), server.built[0])

    async def test_never_stopping_port_gets_no_protocol_advice(self) -> None:
        """A CleanupTimeout for a port alone gives no advice about protocols."""
        error = CleanupTimeout("serving()", 0.3, [], "an address")
        self.assertNotIn("protocol did not close", str(error))
        self.assertIn("did not report stopping", str(error))

    def test_still_open_after_the_abort_named(self) -> None:
        """A CleanupTimeout for connections that did not close even when
        aborted names each as still open, and not as closed."""
        from cleanconn import ConnectionReport

        report = ConnectionReport("client", None, None, Recorder, None)
        error = CleanupTimeout("connected()", 0.3, [report], unclosed=[report])
        self.assertIn("1 of them did not close even when aborted", str(error))
        self.assertNotIn("All of them are closed now", str(error))
