"""datagrams() and DatagramStream: datagram sockets for a block, always closed."""

from __future__ import annotations

import os
import socket
import time
from typing import Any
from unittest import SkipTest

from twisted.internet import defer, reactor
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.error import CannotListenError, ConnectionRefusedError
from twisted.internet.interfaces import (
    IReactorCore,
    IReactorTCP,
    IReactorTime,
    IReactorUDP,
)
from twisted.internet.protocol import DatagramProtocol, Factory
from twisted.internet.testing import MemoryReactorClock
from typing_extensions import assert_type
from zope.interface import implementer

from cleanconn import (
    CleanupTimeout,
    DatagramStream,
    DeadlineExceeded,
    ScopeClosed,
    TestCase,
    WaitTimeout,
    clean_reactor,
    datagrams,
    deadline,
    enter_scope,
    serving,
)
from cleanconn._streams import HIGH_WATER

from ._helpers import MARGIN, Echo, SlowToStop, own_readers_writers
from .test_transports import has_ipv6


class EchoUDP(DatagramProtocol):
    """The server under test: sends each datagram back to its sender."""

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self.transport.write(datagram, addr)


class Collector(DatagramProtocol):
    """A client protocol of the user's own: ``await proto.next()``."""

    def __init__(self) -> None:
        self.received: list[tuple[bytes, Any]] = []
        self._waiting: defer.Deferred[tuple[bytes, Any]] | None = None
        self.started = 0
        self.stopped = 0

    def startProtocol(self) -> None:
        self.started += 1

    def stopProtocol(self) -> None:
        self.stopped += 1

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        if self._waiting is not None:
            waiting, self._waiting = self._waiting, None
            waiting.callback((datagram, addr))
        else:
            self.received.append((datagram, addr))

    def next(self) -> defer.Deferred[tuple[bytes, Any]]:
        if self.received:
            return defer.succeed(self.received.pop(0))
        self._waiting = defer.Deferred()
        return self._waiting


class FailsToStart(DatagramProtocol):
    """A protocol whose startProtocol() raises (after noting its port)."""

    def startProtocol(self) -> None:
        self.port = self.transport.getHost().port
        raise RuntimeError("startProtocol failed")


def host_port(address: Any) -> tuple[str, int]:
    return (address.host, address.port)


def arrival(proto: Any) -> defer.Deferred[None]:
    """Fires once the next datagram has reached ``proto`` (instrumentation:
    it wraps ``datagramReceived`` on the instance, once)."""
    arrived: defer.Deferred[None] = defer.Deferred()
    received = proto.datagramReceived

    def spy(data: bytes, addr: Any) -> None:
        del proto.datagramReceived
        received(data, addr)
        arrived.callback(None)

    proto.datagramReceived = spy
    return arrived


def refusal(proto: Any) -> defer.Deferred[None]:
    """
    Fires once ``proto`` has heard of a refused datagram (instrumentation:
    wraps, once, ``connectionRefused``, which the select and asyncio
    reactors call, and ``stopProtocol``: the epoll and poll reactors close a
    UDP socket on the error instead).
    """
    refused: defer.Deferred[None] = defer.Deferred()

    def spy(name: str) -> None:
        told = getattr(proto, name)

        def heard() -> None:
            del proto.connectionRefused, proto.stopProtocol
            told()
            refused.callback(None)

        setattr(proto, name, heard)

    spy("connectionRefused")
    spy("stopProtocol")
    return refused


def unbound_port() -> int:
    """A UDP port on 127.0.0.1 that nothing is bound to (a moment ago it was;
    the system does not hand it out again at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def can_bind(port: int, host: str = "127.0.0.1") -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


class DatagramTestCase(TestCase):
    async def setUp(self) -> None:  # type: ignore[override]
        # cleanconn's janitor checks each test when it ends (as its
        # cleanup): nothing may be left on the reactor, UDP ports included.
        await enter_scope(self, clean_reactor())


class UserProtocolTests(DatagramTestCase):
    async def test_echo_round_trip(self) -> None:
        """A user's DatagramProtocol client and server exchange a datagram."""
        server = EchoUDP()
        async with datagrams(server) as bound, datagrams(Collector()) as client:
            assert_type(bound, EchoUDP)
            self.assertIs(bound, server)
            address = host_port(server.transport.getHost())
            client.transport.write(b"ping", address)
            self.assertEqual(await client.next(), (b"ping", address))

    async def test_exit_waits_for_the_stop(self) -> None:
        """When the block ends, stopProtocol() has run and the port is unbound."""
        proto = Collector()
        async with datagrams(proto):
            port = proto.transport.getHost().port
        self.assertEqual((proto.started, proto.stopped), (1, 1))
        self.assertIsNone(proto.transport)
        self.assertTrue(can_bind(port))

    async def test_same_port_again(self) -> None:
        """The port of a block that ended can be bound by the next block."""
        async with datagrams(Collector()) as proto:
            port = proto.transport.getHost().port
        async with datagrams(Collector(), port=port) as again:
            self.assertEqual(again.transport.getHost().port, port)

    async def test_stop_listening_in_the_block(self) -> None:
        """A stopListening() called in the block is waited for, not repeated."""
        proto = Collector()
        async with datagrams(proto):
            port = proto.transport.getHost().port
            proto.transport.stopListening()
        self.assertEqual(proto.stopped, 1)
        self.assertTrue(can_bind(port))

    async def test_stopped_in_the_block(self) -> None:
        """A port stopped and waited for in the block leaves the exit nothing."""
        proto = Collector()
        async with datagrams(proto):
            stopped: Any = proto.transport.stopListening()
            await stopped
        self.assertEqual(proto.stopped, 1)

    async def test_body_exception_wins(self) -> None:
        """The block's exception goes on, and the socket is closed anyway."""
        proto = Collector()
        with self.assertRaises(KeyError):
            async with datagrams(proto):
                raise KeyError("body")
        self.assertEqual(proto.stopped, 1)

    async def test_start_protocol_raises(self) -> None:
        """A startProtocol() that raises fails the entry, and its socket is closed."""
        proto = FailsToStart()
        with self.assertRaises(RuntimeError):
            async with datagrams(proto):
                self.fail("the block ran")
        self.assertIsNone(proto.transport)
        self.assertTrue(can_bind(proto.port))

    async def test_port_in_use(self) -> None:
        """Binding a port in use raises Twisted's CannotListenError."""
        async with datagrams(Collector()) as proto:
            port = proto.transport.getHost().port
            with self.assertRaises(CannotListenError):
                async with datagrams(Collector(), port=port):
                    self.fail("the block ran")

    async def test_scope_exit_cancelled(self) -> None:
        """Cancelling the exit while the port stops still lets it stop first."""
        proto = Collector()

        async def scope() -> None:
            async with datagrams(proto):
                pass

        # The entry and the block run at once: the exit now waits for the
        # port, whose stop completes on the next reactor turn.
        running = defer.ensureDeferred(scope())
        self.assertFalse(running.called)
        running.cancel()
        with self.assertRaises(defer.CancelledError):
            await running
        self.assertEqual(proto.stopped, 1)


class StreamTests(DatagramTestCase):
    async def test_no_protocol_gives_a_stream(self) -> None:
        """datagrams() with no protocol gives a DatagramStream bound on 127.0.0.1."""
        async with datagrams() as stream:
            assert_type(stream, DatagramStream[tuple[str, int]])
            self.assertIsInstance(stream, DatagramStream)
            self.assertIsInstance(stream.address, IPv4Address)
            self.assertEqual(
                (stream.address.type, stream.address.host), ("UDP", "127.0.0.1")
            )

    async def test_echo_server(self) -> None:
        """A stream sends to an echo server and receives the echo and its sender."""
        async with datagrams(EchoUDP()) as server, datagrams() as client:
            address = server.transport.getHost()
            client.send(b"ping", address)
            self.assertEqual(await client.receive(), (b"ping", host_port(address)))

    async def test_stream_to_stream(self) -> None:
        """Two streams talk: the receiver answers the sender it was given."""
        async with datagrams() as a, datagrams() as b:
            a.send(b"question", (b.address.host, b.address.port))
            data, sender = await b.receive()
            self.assertEqual((data, sender), (b"question", host_port(a.address)))
            b.send(b"answer", sender)
            self.assertEqual(await a.receive(), (b"answer", host_port(b.address)))

    async def test_arrival_order(self) -> None:
        """Datagrams queued before any receive() come out in arrival order."""
        async with datagrams() as a, datagrams() as b:
            for i in range(5):
                a.send(b"%d" % i, b.address)
            got = [(await b.receive())[0] for _ in range(5)]
        self.assertEqual(got, [b"0", b"1", b"2", b"3", b"4"])

    async def test_thousand_datagrams(self) -> None:
        """1,000 datagrams through an echo server, all back, in order."""
        # In windows of 20: never more than 20 datagrams in any socket's
        # receive buffer (a few KB each at most, against the 208 KB Linux
        # gives by default), so none is dropped, however slow the machine.
        window = 20
        got: list[bytes] = []
        async with datagrams(EchoUDP()) as server, datagrams() as client:
            address = server.transport.getHost()
            for start in range(0, 1000, window):
                for i in range(start, start + window):
                    client.send(b"datagram %d" % i, address)
                for _ in range(window):
                    got.append((await client.receive())[0])
        self.assertEqual(got, [b"datagram %d" % i for i in range(1000)])

    async def test_send_bytes_like(self) -> None:
        """send() takes a bytearray or a memoryview; each arrives as bytes."""
        async with datagrams() as a, datagrams() as b:
            a.send(bytearray(b"array"), b.address)  # type: ignore[arg-type]
            a.send(memoryview(b"view"), b.address)  # type: ignore[arg-type]
            self.assertEqual((await b.receive())[0], b"array")
            self.assertEqual((await b.receive())[0], b"view")

    async def test_large_datagram(self) -> None:
        """A 65,000-byte datagram arrives whole (listenUDP's default cuts at 8 KiB)."""
        data = os.urandom(65000)
        async with datagrams() as a, datagrams() as b:
            a.send(data, b.address)
            self.assertEqual((await b.receive())[0], data)

    async def test_one_receive_at_a_time(self) -> None:
        """A second receive() while one waits is refused."""
        async with datagrams() as stream:
            first = stream.receive()
            with self.assertRaises(RuntimeError) as caught:
                stream.receive()
            self.assertIn("another receive() is still waiting", str(caught.exception))
            first.cancel()
            self.failureResultOf(first, defer.CancelledError)

    async def test_cancelled_receive_gives_way(self) -> None:
        """A cancelled receive() takes nothing: the next one gets the datagram."""
        async with datagrams() as a, datagrams() as b:
            waiting = b.receive()
            waiting.cancel()
            self.failureResultOf(waiting, defer.CancelledError)
            a.send(b"after", b.address)
            self.assertEqual((await b.receive())[0], b"after")

    async def test_receive_timeout(self) -> None:
        """A datagram lost: receive(timeout=) raises WaitTimeout naming the stream."""
        async with datagrams() as stream:
            with self.assertRaises(WaitTimeout) as caught:
                await stream.receive(timeout=0.05)
        self.assertIsInstance(caught.exception, defer.TimeoutError)
        message = str(caught.exception)
        self.assertIn("receive() on <cleanconn.DatagramStream 127.0.0.1:", message)
        self.assertIn("Nothing arrived", message)

    async def test_receive_after_a_timeout(self) -> None:
        """After a receive timed out, the next datagram goes to the next receive."""
        async with datagrams() as a, datagrams() as b:
            with self.assertRaises(WaitTimeout):
                await b.receive(timeout=0.05)
            a.send(b"late", b.address)
            self.assertEqual((await b.receive(timeout=60))[0], b"late")

    async def test_deadline_names_the_receive(self) -> None:
        """A lost datagram under @deadline: its error names the receive and line."""

        @deadline(0.1)
        async def body() -> None:
            async with datagrams() as stream:
                await stream.receive()

        with self.assertRaises(DeadlineExceeded) as caught:
            await body()
        message = str(caught.exception)
        self.assertIn("await stream.receive()", message)
        self.assertIn("receive() on <cleanconn.DatagramStream 127.0.0.1:", message)
        self.assertIn("no datagram arrived yet", message)

    async def test_pending_receive_at_exit(self) -> None:
        """A receive() still waiting when the block ends fails with ScopeClosed."""
        async with datagrams() as stream:
            waiting = stream.receive()
        failure = self.failureResultOf(waiting, ScopeClosed)
        self.assertIn("receive(): its datagrams() scope has ended", str(failure.value))

    async def test_queued_after_the_block(self) -> None:
        """What was queued stays receivable after the block; then ScopeClosed."""
        async with datagrams() as a, datagrams() as b:
            arrived = arrival(b)
            a.send(b"kept", b.address)
            await arrived
        self.assertEqual((await b.receive())[0], b"kept")
        with self.assertRaises(ScopeClosed):
            b.receive()

    async def test_send_after_the_block(self) -> None:
        """send() after the block raises ScopeClosed."""
        async with datagrams() as stream:
            pass
        with self.assertRaises(ScopeClosed) as caught:
            stream.send(b"late", ("127.0.0.1", 9))
        self.assertIn("send()", str(caught.exception))

    async def test_repr(self) -> None:
        """The repr names the address, the datagrams queued, and the close."""
        async with datagrams() as a, datagrams() as b:
            where = f"127.0.0.1:{b.address.port}"
            self.assertEqual(repr(b), f"<cleanconn.DatagramStream {where}>")
            arrived = arrival(b)
            a.send(b"x", b.address)
            await arrived
            self.assertEqual(
                repr(b), f"<cleanconn.DatagramStream {where}, 1 datagram queued>"
            )
            await b.receive()
        self.assertEqual(repr(b), f"<cleanconn.DatagramStream {where} (closed)>")

    async def test_stops_reading_past_high_water(self) -> None:
        """Past 1 MiB queued the stream stops reading; a receive() resumes it."""
        size = 60000
        count = HIGH_WATER // size + 1
        async with datagrams() as a, datagrams() as b:
            port: Any = b.transport
            for i in range(count):  # one at a time: none is dropped
                arrived = arrival(b)
                a.send(bytes([i]) * size, b.address)
                await arrived
            self.assertNotIn(port, reactor.getReaders())
            first, _ = await b.receive()
            self.assertIn(port, reactor.getReaders())
            rest = [(await b.receive())[0] for _ in range(count - 1)]
        self.assertEqual([d[0] for d in [first, *rest]], list(range(count)))

    async def test_clean_reactor_after_a_block(self) -> None:
        """clean_reactor() finds nothing after a block that sent and timed out."""
        before = own_readers_writers(reactor)
        async with clean_reactor():
            async with datagrams(EchoUDP()) as server, datagrams() as client:
                client.send(b"x", server.transport.getHost())
                await client.receive(timeout=60)
                with self.assertRaises(WaitTimeout):
                    await client.receive(timeout=0.01)
        self.assertEqual(own_readers_writers(reactor), before)


class ConnectedTests(DatagramTestCase):
    async def test_send_needs_no_address(self) -> None:
        """A connected stream sends to its peer and receives its answer."""
        async with datagrams(EchoUDP()) as server:
            peer = host_port(server.transport.getHost())
            async with datagrams(connect=peer) as client:
                client.send(b"hello")
                self.assertEqual(await client.receive(), (b"hello", peer))

    async def test_connect_to_an_address_object(self) -> None:
        """connect= takes an address object too, such as another's getHost()."""
        async with datagrams() as server:
            async with datagrams(connect=server.address) as client:
                client.send(b"hi")
                self.assertEqual((await server.receive())[0], b"hi")

    async def test_receives_only_from_the_peer(self) -> None:
        """A connected stream never sees a datagram from anyone but its peer."""
        async with datagrams() as peer, datagrams() as stranger:
            async with datagrams(connect=peer.address) as client:
                stranger.send(b"not for you", client.address)
                peer.send(b"for you", client.address)
                self.assertEqual((await client.receive())[0], b"for you")

    async def test_send_elsewhere_refused(self) -> None:
        """send() to another address than the peer's is a ValueError."""
        async with datagrams() as peer, datagrams(connect=peer.address) as client:
            with self.assertRaises(ValueError) as caught:
                client.send(b"x", ("127.0.0.1", 9))
            self.assertIn("connected to 127.0.0.1:", str(caught.exception))
            client.send(b"x", peer.address)  # its own peer is fine

    async def test_repr_names_the_peer(self) -> None:
        """A connected stream's repr shows local -> peer."""
        async with datagrams() as peer, datagrams(connect=peer.address) as client:
            self.assertIn(f"-> 127.0.0.1:{peer.address.port}>", repr(client))

    async def test_refused_fails_the_waiting_receive(self) -> None:
        """Nothing listening at the peer fails a waiting receive, naming the peer."""
        port = unbound_port()
        async with datagrams(connect=("127.0.0.1", port)) as client:
            waiting = client.receive(timeout=MARGIN)  # bounded if no ICMP came
            client.send(b"anyone?")
            with self.assertRaises(ConnectionRefusedError) as caught:
                await waiting
        message = str(caught.exception)
        self.assertIn(f"nothing listens at 127.0.0.1:{port}", message)
        self.assertIn("receive() on <cleanconn.DatagramStream", message)

    async def test_refused_fails_the_next_receive(self) -> None:
        """A refusal that came with no receive waiting fails the next receive."""
        port = unbound_port()
        async with datagrams(connect=("127.0.0.1", port)) as client:
            refused = refusal(client)
            client.send(b"anyone?")
            await refused
            with self.assertRaises(ConnectionRefusedError):
                await client.receive()

    async def test_send_after_the_socket_was_closed_on_a_refusal(self) -> None:
        """Where the reactor closes a connected socket on a refusal (epoll,
        poll), send() raises the refusal, naming the peer."""
        port = unbound_port()
        async with datagrams(connect=("127.0.0.1", port)) as client:
            refused = refusal(client)
            client.send(b"anyone?")
            await refused
            if client.transport is not None:
                raise SkipTest("this reactor keeps the socket open on a refusal")
            with self.assertRaises(ConnectionRefusedError) as caught:
                client.send(b"again?")
        self.assertIn(f"nothing listens at 127.0.0.1:{port}", str(caught.exception))


class IPv6Tests(DatagramTestCase):
    if not has_ipv6():
        skip = "this machine has no IPv6 loopback"

    async def test_round_trip(self) -> None:
        """Two streams on ::1 exchange a datagram; the sender is an IPv6 address."""
        async with datagrams(host="::1") as a, datagrams(host="::1") as b:
            self.assertIsInstance(a.address, IPv6Address)
            a.send(b"six", b.address)
            self.assertEqual(await b.receive(), (b"six", ("::1", a.address.port)))

    async def test_echo_server_connected(self) -> None:
        """A user's echo server on ::1, and a stream connected to it."""
        async with datagrams(EchoUDP(), host="::1") as server:
            peer = host_port(server.transport.getHost())
            async with datagrams(host="::1", connect=peer) as client:
                client.send(b"v6")
                self.assertEqual(await client.receive(), (b"v6", peer))

    async def test_send_to_the_other_family(self) -> None:
        """An IPv4 stream sending to ::1 is a ValueError saying how to bind."""
        async with datagrams() as stream:
            with self.assertRaises(ValueError) as caught:
                stream.send(b"x", ("::1", 9))
        self.assertIn("host='::1'", str(caught.exception))


class UNIXTests(DatagramTestCase):
    async def test_private_directory(self) -> None:
        """unix=True binds in a private directory, removed at exit."""
        async with datagrams(unix=True) as a, datagrams(unix=True) as b:
            assert_type(a, DatagramStream[str | None])
            self.assertIsInstance(a.address, UNIXAddress)
            path = os.fsdecode(a.address.name)
            self.assertEqual(os.stat(os.path.dirname(path)).st_mode & 0o777, 0o700)
            a.send(b"local", b.address)
            self.assertEqual(await b.receive(), (b"local", path))
        self.assertFalse(os.path.exists(os.path.dirname(path)))

    async def test_path_of_your_own(self) -> None:
        """unix=path binds there; the socket file is removed at exit."""
        directory = self.mktemp()
        os.mkdir(directory)
        path = os.path.join(directory, "dgram")
        async with datagrams(unix=path) as stream:
            self.assertEqual(os.fsdecode(stream.address.name), path)
        self.assertFalse(os.path.exists(path))
        async with datagrams(unix=path):  # and it can be bound again
            pass

    async def test_abstract_sender(self) -> None:
        """A datagram from a socket bound in the abstract namespace comes with
        its name as text, and an answer sent to that name reaches it."""
        name = f"\0cleanconn-test-{os.getpid()}-{id(self)}"
        async with datagrams(unix=True) as stream:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.bind(name)
                sock.sendto(b"abstract", os.fsdecode(stream.address.name))
                self.assertEqual(await stream.receive(), (b"abstract", name))
                stream.send(b"answer", name)
                self.assertEqual(sock.recv(100), b"answer")

    async def test_send_to_no_path(self) -> None:
        """send() on a UNIX socket to what is no path is a TypeError."""
        async with datagrams(unix=True) as stream:
            with self.assertRaises(TypeError) as caught:
                stream.send(b"x", ("127.0.0.1", 9))  # type: ignore[arg-type]
        self.assertIn("sends to a socket path", str(caught.exception))

    async def test_socket_file_removed_in_the_block(self) -> None:
        """A socket file of unix=path that the block removed is no error at
        the exit."""
        directory = self.mktemp()
        os.mkdir(directory)
        path = os.path.join(directory, "dgram")
        async with datagrams(unix=path):
            os.unlink(path)
        self.assertEqual(os.listdir(directory), [])

    async def test_unbound_sender(self) -> None:
        """A datagram from an unbound UNIX socket comes with sender None."""
        async with datagrams(unix=True) as stream:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(b"anonymous", os.fsdecode(stream.address.name))
            self.assertEqual(await stream.receive(), (b"anonymous", None))


class FailsToStop(SlowToStop):
    """A real UDP port whose stopListening() stops it, then fails."""

    def stopListening(self) -> defer.Deferred[None]:
        def failed(_: object) -> None:
            raise OSError("the stop failed")

        stopped: defer.Deferred[None] = self._port.stopListening()
        return stopped.addCallback(failed)


@implementer(IReactorTCP, IReactorTime, IReactorCore, IReactorUDP)
class FaultyReactor:
    """The global reactor, whose UDP ports are wrapped in ``port_type``."""

    def __init__(self, port_type: type[SlowToStop], delay: float = 0) -> None:
        self.port_type = port_type
        self.delay = delay
        self.ports: list[SlowToStop] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(reactor, name)

    def listenUDP(self, *args: Any, **kwargs: Any) -> SlowToStop:
        port = self.port_type(reactor.listenUDP(*args, **kwargs), self.delay)
        self.ports.append(port)
        return port


class FaultTests(DatagramTestCase):
    async def test_port_that_never_reports_stopping(self) -> None:
        """A port whose stop never reports: CleanupTimeout names it, in time."""
        slow = FaultyReactor(SlowToStop, 60)
        start = time.monotonic()
        with self.assertRaises(CleanupTimeout) as caught:
            async with datagrams(reactor=slow, timeout=0.3) as stream:  # type: ignore[call-overload]
                address = stream.address
        self.assertLess(time.monotonic() - start, 0.3 + MARGIN)
        slow.ports[0].report.cancel()  # the fake's own late report
        self.assertEqual(caught.exception.port, address)
        self.assertIn("did not report stopping", str(caught.exception))

    async def test_port_whose_stop_fails(self) -> None:
        """A port whose stop fails: the exit raises that failure."""
        faulty = FaultyReactor(FailsToStop)
        with self.assertRaises(OSError) as caught:
            async with datagrams(reactor=faulty):  # type: ignore[call-overload]
                pass
        self.assertEqual(str(caught.exception), "the stop failed")


class BadInputTests(DatagramTestCase):
    def test_protocol_class(self) -> None:
        """A DatagramProtocol class instead of an instance says to make one."""
        with self.assertRaises(TypeError) as caught:
            datagrams(EchoUDP)  # type: ignore[call-overload]
        self.assertIn("datagrams(EchoUDP())", str(caught.exception))

    def test_connected_datagram_protocol(self) -> None:
        """A ConnectedDatagramProtocol is refused, saying what takes one."""
        from twisted.internet.protocol import ConnectedDatagramProtocol

        with self.assertRaises(TypeError) as caught:
            datagrams(ConnectedDatagramProtocol())
        self.assertIn("connectUNIXDatagram()", str(caught.exception))

    def test_something_else(self) -> None:
        """What is no protocol at all is refused, saying what is needed."""
        with self.assertRaises(TypeError) as caught:
            datagrams(42)  # type: ignore[call-overload]
        self.assertTrue(str(caught.exception).endswith("got 42."))

    def test_unix_must_be_true_or_a_path(self) -> None:
        """unix= takes True or a path."""
        with self.assertRaises(TypeError) as caught:
            datagrams(unix=1)  # type: ignore[call-overload]
        self.assertIn("unix must be True", str(caught.exception))

    def test_stream_factory(self) -> None:
        """A stream protocol factory points to serving() and connected()."""
        with self.assertRaises(TypeError) as caught:
            datagrams(Factory.forProtocol(Echo))  # type: ignore[call-overload]
        self.assertIn("cleanconn.serving()", str(caught.exception))

    async def test_protocol_bound_already(self) -> None:
        """A protocol already bound to a socket is a ValueError."""
        async with datagrams(Collector()) as proto:
            with self.assertRaises(ValueError) as caught:
                datagrams(proto)
        self.assertIn("bound already", str(caught.exception))

    async def test_protocol_bound_by_another_scope_meanwhile(self) -> None:
        """A protocol bound between datagrams() and its entry: ValueError, and
        the other scope's stream goes on working."""
        stream: DatagramStream = DatagramStream()
        later = datagrams(stream)
        async with datagrams(stream), datagrams() as sender:
            with self.assertRaises(ValueError):
                async with later:
                    self.fail("the block ran")
            sender.send(b"still open", stream.address)
            self.assertEqual((await stream.receive())[0], b"still open")

    def test_host_name(self) -> None:
        """A host name instead of an address literal is a ValueError."""
        with self.assertRaises(ValueError) as caught:
            datagrams(host="localhost")
        self.assertIn("'127.0.0.1' or '::1'", str(caught.exception))

    def test_host_not_a_string(self) -> None:
        """A host that is not a str is a TypeError."""
        with self.assertRaises(TypeError):
            datagrams(host=b"127.0.0.1")  # type: ignore[call-overload]

    async def test_address_not_on_this_machine(self) -> None:
        """A host that is no local address fails the entry with CannotListenError."""
        with self.assertRaises(CannotListenError) as caught:
            async with datagrams(host="192.0.2.1"):  # TEST-NET-1: never local
                self.fail("the block ran")
        self.assertIn("192.0.2.1", str(caught.exception))

    def test_bad_port(self) -> None:
        """A port that is not an int is a TypeError; out of range, a ValueError."""
        with self.assertRaises(TypeError):
            datagrams(port="53")  # type: ignore[call-overload]
        with self.assertRaises(ValueError):
            datagrams(port=65536)

    def test_bad_connect(self) -> None:
        """connect= that is no (host, port) is a TypeError naming the form."""
        for connect in ("127.0.0.1:53", ("127.0.0.1",), ("127.0.0.1", "53")):
            with self.assertRaises(TypeError) as caught:
                datagrams(connect=connect)  # type: ignore[arg-type]
            self.assertIn("(host, port)", str(caught.exception))

    def test_connect_to_the_other_family(self) -> None:
        """connect= to ::1 from an IPv4 socket is a ValueError."""
        with self.assertRaises(ValueError) as caught:
            datagrams(connect=("::1", 53))
        self.assertIn("host='::1'", str(caught.exception))

    def test_connect_to_port_zero(self) -> None:
        """connect= to port 0 is a ValueError."""
        with self.assertRaises(ValueError):
            datagrams(connect=("127.0.0.1", 0))

    def test_unix_with_host_or_connect(self) -> None:
        """unix= with host= or connect= is a TypeError."""
        with self.assertRaises(TypeError):
            datagrams(unix=True, host="::1")
        with self.assertRaises(TypeError):
            datagrams(unix=True, connect=("127.0.0.1", 53))  # type: ignore[call-overload]

    def test_empty_unix_path(self) -> None:
        """unix='' is a ValueError, not a UDP socket."""
        with self.assertRaises(ValueError):
            datagrams(unix="")

    def test_bad_timeout(self) -> None:
        """A timeout that is not positive is a ValueError."""
        with self.assertRaises(ValueError):
            datagrams(timeout=0)

    def test_reactor_without_udp(self) -> None:
        """A reactor that cannot bind UDP is a TypeError naming IReactorUDP."""
        with self.assertRaises(TypeError) as caught:
            datagrams(reactor=MemoryReactorClock())  # type: ignore[call-overload]
        self.assertIn("IReactorUDP", str(caught.exception))

    async def test_send_text(self) -> None:
        """send() of a str is a TypeError saying to encode it."""
        async with datagrams() as stream:
            with self.assertRaises(TypeError) as caught:
                stream.send("text", stream.address)  # type: ignore[arg-type]
        self.assertIn("encode", str(caught.exception))

    async def test_send_without_address(self) -> None:
        """send() with no address on a stream not connected is a TypeError."""
        async with datagrams() as stream:
            with self.assertRaises(TypeError) as caught:
                stream.send(b"where to?")
        self.assertIn("datagrams(connect=(host, port))", str(caught.exception))

    async def test_send_to_a_malformed_address(self) -> None:
        """send() to something that is no (host, port) is a TypeError."""
        async with datagrams() as stream:
            for address in ("127.0.0.1:9", ("127.0.0.1",), (b"127.0.0.1", 9)):
                with self.assertRaises(TypeError) as caught:
                    stream.send(b"x", address)  # type: ignore[arg-type]
                self.assertIn("(host, port)", str(caught.exception))

    async def test_send_to_a_host_name(self) -> None:
        """send() to a host name is a ValueError: datagrams go to addresses."""
        async with datagrams() as stream:
            with self.assertRaises(ValueError) as caught:
                stream.send(b"x", ("localhost", 9))
        self.assertIn("not an IP address literal", str(caught.exception))

    async def test_bad_receive_timeout(self) -> None:
        """receive(timeout=0) is a ValueError."""
        async with datagrams() as stream:
            with self.assertRaises(ValueError):
                stream.receive(timeout=0)

    def test_address_of_a_stream_not_bound(self) -> None:
        """The address of a DatagramStream never bound is a RuntimeError."""
        with self.assertRaises(RuntimeError) as caught:
            DatagramStream().address  # noqa: B018
        self.assertIn("async with datagrams() as stream", str(caught.exception))

    def test_send_on_a_stream_not_bound(self) -> None:
        """send() on a DatagramStream never bound is a RuntimeError."""
        with self.assertRaises(RuntimeError) as caught:
            DatagramStream().send(b"x", ("127.0.0.1", 9))
        self.assertIn("async with datagrams() as stream", str(caught.exception))

    def test_stream_not_bound(self) -> None:
        """A DatagramStream never bound says how to get one that is."""
        with self.assertRaises(RuntimeError) as caught:
            DatagramStream().receive()
        self.assertIn("async with datagrams() as stream", str(caught.exception))

    def test_serving_a_datagram_protocol(self) -> None:
        """serving() given a DatagramProtocol points to cleanconn.datagrams()."""
        with self.assertRaises(TypeError) as caught:
            serving(EchoUDP())  # type: ignore[call-overload]
        self.assertIn("Use cleanconn.datagrams() for it", str(caught.exception))
