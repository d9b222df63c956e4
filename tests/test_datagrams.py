"""datagrams() and DatagramStream: datagram sockets for a block, always closed."""

from __future__ import annotations

import errno
import os
import select
import shutil
import socket
import time
from typing import Any
from unittest import SkipTest

from twisted.internet import defer, reactor
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.error import CannotListenError, ConnectionRefusedError
from twisted.internet.interfaces import (
    IAddress,
    IListeningPort,
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
    """A protocol whose startProtocol() raises (after noting its port, and
    keeping it, as ``bound``)."""

    def startProtocol(self) -> None:
        self.bound = self.transport
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


#: The size of each datagram past_high_water() sends.
LARGE = 60000


async def past_high_water(
    sender: DatagramStream, receiver: DatagramStream, count: int = 0
) -> int:
    """Send ``count`` datagrams of LARGE bytes (by default, enough to put
    ``receiver`` past its high water), the i-th's bytes all ``i``, each once
    the one before has arrived (so that none is dropped); return how many."""
    count = count or HIGH_WATER // LARGE + 1
    for i in range(count):
        arrived = arrival(receiver)
        sender.send(bytes([i]) * LARGE, receiver.address)
        await arrived
    return count


def pending(sock: socket.socket, events: int) -> None:
    """Wait until ``events`` (or an error: POLLERR, always polled for) are
    pending on ``sock``; the kernel makes them on its own, within
    microseconds, so a blocking poll() does not hold up the reactor."""
    poll = select.poll()
    poll.register(sock, events)
    if not poll.poll(MARGIN * 1000):
        raise AssertionError(f"nothing pending on {sock!r} within {MARGIN} s")


async def refused_with_a_datagram(client: DatagramStream, peer: socket.socket) -> None:
    """
    ``peer`` (the socket ``client`` is connected to) sends ``b"after"`` and
    closes, ``client`` sends to it; return once the reactor read the
    refusal. The test holds the client's input meanwhile, so that the
    datagram and the refusal wait in its socket together when reading
    resumes: the reactor then reads the refusal (connectionRefused()), not
    a socket in error that it closes.
    """
    port: Any = client.transport
    port.stopReading()
    peer.sendto(b"after", host_port(client.address))
    pending(port.socket, select.POLLIN)
    peer.close()
    client.send(b"anyone?")
    pending(port.socket, 0)  # POLLERR: the refusal
    refused = refusal(client)
    port.startReading()
    await refused


class HostUnreachable:
    """
    A UDP port's socket, with an ICMP "host unreachable" (EHOSTUNREACH)
    pending on it: a fault a test on loopback cannot make happen, so this
    stand-in reports it (SO_ERROR) and passes all else to the real socket.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)

    def getsockopt(self, level: int, option: int) -> int:
        if (level, option) == (socket.SOL_SOCKET, socket.SO_ERROR):
            return errno.EHOSTUNREACH
        return self._sock.getsockopt(level, option)


class ErrorUnreadable(HostUnreachable):
    """A UDP port's socket whose pending error cannot be read: getsockopt()
    of SO_ERROR raises (as on a socket already closed)."""

    def getsockopt(self, level: int, option: int) -> int:
        if (level, option) == (socket.SOL_SOCKET, socket.SO_ERROR):
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        return self._sock.getsockopt(level, option)


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

    async def test_start_protocol_raises_port_kept(self) -> None:
        """The port of a startProtocol() that raised is closed and stopped even
        while the protocol keeps it: its stopListening() has nothing to do."""
        proto = FailsToStart()
        with self.assertRaises(RuntimeError):
            async with datagrams(proto):
                self.fail("the block ran")
        self.assertTrue(can_bind(proto.port))
        self.assertIsNone(proto.bound.stopListening())

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
        """send() takes a bytearray or a memoryview, even a strided one (which
        a socket refuses); each arrives as bytes."""
        async with datagrams() as a, datagrams() as b:
            a.send(bytearray(b"array"), b.address)  # type: ignore[arg-type]
            a.send(memoryview(b"v-i-e-w-")[::2], b.address)  # type: ignore[arg-type]
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
            self.assertEqual(
                str(caught.exception),
                "receive(): another receive() is still waiting on "
                f"<cleanconn.DatagramStream 127.0.0.1:{stream.address.port}>; a "
                "stream receives one datagram at a time. Await each receive() "
                "before the next.",
            )
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
        self.assertEqual(
            str(caught.exception),
            f"receive() on <cleanconn.DatagramStream 127.0.0.1:{stream.address.port}>"
            " did not complete within timeout=0.05s. Nothing arrived. Is the peer "
            "sending what the test waits for? If it is merely slow, raise timeout=.",
        )

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
        with self.assertRaises(ScopeClosed) as caught:
            b.receive()
        self.assertEqual(
            str(caught.exception),
            "receive(): its datagrams() scope has ended, or is ending, so there "
            "is nothing more to receive. Call it inside the async with block, "
            "and await it there.",
        )

    async def test_send_after_the_block(self) -> None:
        """send() after the block raises ScopeClosed."""
        async with datagrams() as stream:
            pass
        with self.assertRaises(ScopeClosed) as caught:
            stream.send(b"late", ("127.0.0.1", 9))
        self.assertEqual(
            str(caught.exception),
            "send(): its datagrams() scope has ended, or is ending, so there is "
            "nothing more to send. Call it inside the async with block, and "
            "await it there.",
        )

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

    async def test_repr_datagrams_queued(self) -> None:
        """The repr counts the datagrams queued, in the plural past one."""
        async with datagrams() as a, datagrams() as b:
            for _ in range(2):
                arrived = arrival(b)
                a.send(b"x", b.address)
                await arrived
            self.assertEqual(
                repr(b),
                f"<cleanconn.DatagramStream 127.0.0.1:{b.address.port}, "
                "2 datagrams queued>",
            )

    async def test_stops_reading_past_high_water(self) -> None:
        """Past 1 MiB queued the stream stops reading; a receive() resumes it."""
        async with datagrams() as a, datagrams() as b:
            port: Any = b.transport
            count = await past_high_water(a, b)
            self.assertNotIn(port, reactor.getReaders())
            first, _ = await b.receive()
            self.assertIn(port, reactor.getReaders())
            rest = [(await b.receive())[0] for _ in range(count - 1)]
        self.assertEqual([d[0] for d in [first, *rest]], list(range(count)))

    async def test_reads_at_high_water(self) -> None:
        """At exactly 1 MiB queued the stream reads: more stops it, until
        receives bring it back to 1 MiB."""
        async with datagrams() as a, datagrams() as b:
            port: Any = b.transport

            async def send(data: bytes) -> None:
                arrived = arrival(b)
                a.send(data, b.address)
                await arrived

            await send(b"a")
            await send(b"b")
            await past_high_water(a, b, HIGH_WATER // LARGE)
            await send(b"x" * (HIGH_WATER % LARGE - 2))
            self.assertIn(port, reactor.getReaders())
            await send(b"yz")
            self.assertNotIn(port, reactor.getReaders())
            self.assertEqual((await b.receive())[0], b"a")
            self.assertNotIn(port, reactor.getReaders())
            self.assertEqual((await b.receive())[0], b"b")
            self.assertIn(port, reactor.getReaders())

    async def test_stops_reading_in_a_second_block(self) -> None:
        """A stream bound again by a second block stops reading past 1 MiB too."""
        stream: DatagramStream = DatagramStream()
        async with datagrams(stream):
            pass
        async with datagrams() as a, datagrams(stream) as b:
            await past_high_water(a, b)
            self.assertNotIn(b.transport, reactor.getReaders())

    async def test_stops_reading_again(self) -> None:
        """Resumed, the stream stops reading again when past 1 MiB once more."""
        async with datagrams() as a, datagrams() as b:
            port: Any = b.transport
            await past_high_water(a, b)
            await b.receive()
            self.assertIn(port, reactor.getReaders())
            await past_high_water(a, b, 1)
            self.assertNotIn(port, reactor.getReaders())

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
            self.assertEqual(
                str(caught.exception),
                "DatagramStream.send(): this stream is connected to "
                f"127.0.0.1:{peer.address.port}, and sends there only; got "
                "('127.0.0.1', 9). Leave the address out, or send from a stream "
                "that is not connected.",
            )
            client.send(b"x", peer.address)  # its own peer is fine

    async def test_send_to_no_address(self) -> None:
        """send() on a connected stream to what is no address is a TypeError
        naming send()."""
        async with datagrams() as peer, datagrams(connect=peer.address) as client:
            with self.assertRaises(TypeError) as caught:
                client.send(b"x", "127.0.0.1:9")  # type: ignore[arg-type]
        self.assertEqual(
            str(caught.exception),
            "DatagramStream.send(): the address must be (host, port), such as "
            "('127.0.0.1', 9999), or an IPv4Address or IPv6Address, got str "
            "'127.0.0.1:9'",
        )

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

    async def test_refusal_read_before_a_datagram(self) -> None:
        """A refusal the reactor reads while a datagram waits in the socket
        fails the next receive, and the socket stays open: the receive after
        gets the datagram."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            peer.bind(("127.0.0.1", 0))
            address = peer.getsockname()
            async with datagrams(connect=address) as client:
                port = client.transport
                await refused_with_a_datagram(client, peer)
                with self.assertRaises(ConnectionRefusedError):
                    await client.receive()
                self.assertEqual(await client.receive(), (b"after", address))
                self.assertIs(client.transport, port)

    async def test_refusal_read_among_datagrams(self) -> None:
        """A refusal the reactor reads with datagrams queued and one waiting in
        the socket takes its place in the queue, and names the peer."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            peer.bind(("127.0.0.1", 0))
            address = peer.getsockname()
            async with datagrams(connect=address) as client:
                arrived = arrival(client)
                peer.sendto(b"before", host_port(client.address))
                await arrived
                await refused_with_a_datagram(client, peer)
                self.assertEqual(await client.receive(), (b"before", address))
                with self.assertRaises(ConnectionRefusedError) as caught:
                    await client.receive()
                self.assertEqual(await client.receive(), (b"after", address))
        self.assertEqual(
            str(caught.exception),
            "Connection was refused by other side: receive() on "
            f"<cleanconn.DatagramStream 127.0.0.1:{client.address.port} -> "
            f"127.0.0.1:{address[1]}, 1 datagram queued>: nothing listens at "
            f"127.0.0.1:{address[1]}; an ICMP 'port unreachable' came back for "
            "a datagram sent there. Start the peer before sending to it, or "
            "check its address.",
        )

    async def closed_on_a_refusal(self, client: DatagramStream) -> None:
        """Send from ``client`` to its peer, where nothing listens, and return
        once the reactor closed its socket on the refusal (epoll and poll do;
        the test is skipped on the others, which keep the socket open)."""
        if type(reactor).__name__ not in ("EPollReactor", "PollReactor"):
            raise SkipTest("this reactor keeps the socket open on a refusal")
        refused = refusal(client)
        client.send(b"anyone?")
        await refused
        self.assertIsNone(client.transport)

    async def test_send_after_the_socket_was_closed_on_a_refusal(self) -> None:
        """Where the reactor closes a connected socket on a refusal (epoll,
        poll), send() raises the refusal, naming the peer and the close."""
        port = unbound_port()
        async with datagrams(connect=("127.0.0.1", port)) as client:
            where = f"127.0.0.1:{client.address.port} -> 127.0.0.1:{port}"
            await self.closed_on_a_refusal(client)
            with self.assertRaises(ConnectionRefusedError) as caught:
                client.send(b"again?")
        self.assertEqual(
            str(caught.exception),
            "Connection was refused by other side: "
            f"receive() on <cleanconn.DatagramStream {where}>: nothing listens at "
            f"127.0.0.1:{port}; an ICMP 'port unreachable' came back for a "
            "datagram sent there, and the reactor closed the socket on it. Start "
            "the peer before sending to it, or check its address.",
        )

    async def test_repr_after_the_socket_was_closed_on_a_refusal(self) -> None:
        """A stream whose socket the reactor closed on a refusal shows itself
        closed, with nothing queued."""
        port = unbound_port()
        async with datagrams(connect=("127.0.0.1", port)) as client:
            await self.closed_on_a_refusal(client)
            self.assertEqual(
                repr(client),
                f"<cleanconn.DatagramStream 127.0.0.1:{client.address.port} -> "
                f"127.0.0.1:{port} (closed)>",
            )


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
            self.assertEqual(os.path.basename(path), "socket")
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
            self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)
        self.assertFalse(os.path.exists(path))
        async with datagrams(unix=path):  # and it can be bound again
            pass

    async def test_path_in_use(self) -> None:
        """unix=path bound by another block fails the entry with
        CannotListenError, and leaves the other's socket file in place."""
        directory = self.mktemp()
        os.mkdir(directory)
        path = os.path.join(directory, "dgram")
        async with datagrams(unix=path):
            with self.assertRaises(CannotListenError):
                async with datagrams(unix=path):
                    self.fail("the block ran")
            self.assertTrue(os.path.exists(path))

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

    async def test_repr(self) -> None:
        """A UNIX datagram stream's repr names its path, and its close."""
        async with datagrams(unix=True) as stream:
            path = os.fsdecode(stream.address.name)
            self.assertEqual(repr(stream), f"<cleanconn.DatagramStream {path}>")
        self.assertEqual(repr(stream), f"<cleanconn.DatagramStream {path} (closed)>")

    async def test_send_to_no_path(self) -> None:
        """send() on a UNIX socket to what is no path is a TypeError."""
        async with datagrams(unix=True) as stream:
            with self.assertRaises(TypeError) as caught:
                stream.send(b"x", ("127.0.0.1", 9))  # type: ignore[arg-type]
        self.assertEqual(
            str(caught.exception),
            "DatagramStream.send(): a UNIX datagram socket sends to a socket "
            "path (a str, or a UNIXAddress), got ('127.0.0.1', 9)",
        )

    async def test_private_directory_removed_in_the_block(self) -> None:
        """The private directory of unix=True that the block removed is no
        error at the exit."""
        async with datagrams(unix=True) as stream:
            directory = os.path.dirname(os.fsdecode(stream.address.name))
            shutil.rmtree(directory)
        self.assertFalse(os.path.exists(directory))

    async def test_large_datagram(self) -> None:
        """A 150,000-byte datagram on a UNIX socket arrives whole (more than
        UDP's largest; listenUNIXDatagram's default cuts at 8 KiB)."""
        data = os.urandom(150000)
        async with datagrams(unix=True) as a, datagrams(unix=True) as b:
            a.send(data, b.address)
            self.assertEqual((await b.receive())[0], data)

    async def test_repr_unbound(self) -> None:
        """A stream on a UNIX datagram socket bound to no path (as
        listenUNIXDatagram("") leaves it) shows it unbound."""
        stream: DatagramStream[str | None] = DatagramStream()
        port: Any = reactor.listenUNIXDatagram("", stream)
        try:
            self.assertEqual(repr(stream), "<cleanconn.DatagramStream (unbound)>")
        finally:
            await port.stopListening()

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


class FalsyError(OSError):
    """An exception that is false in a boolean context."""

    def __bool__(self) -> bool:
        return False


class FailsToStop(SlowToStop):
    """A real UDP port whose stopListening() stops it, then fails with an
    ``error``."""

    error: type[OSError] = OSError

    def stopListening(self) -> defer.Deferred[None]:
        def failed(_: object) -> None:
            raise self.error("the stop failed")

        stopped: defer.Deferred[None] = self._port.stopListening()
        return stopped.addCallback(failed)


class FailsFalsy(FailsToStop):
    """:class:`FailsToStop`, with an exception that is false."""

    error = FalsyError


class CountsStops(SlowToStop):
    """A real UDP port that counts the calls of its stopListening()."""

    stops = 0

    def stopListening(self) -> defer.Deferred[None]:
        self.stops += 1
        return super().stopListening()


@implementer(IListeningPort)
class OnlyAListeningPort:
    """A real UDP port behind IListeningPort's methods and nothing else (no
    ``connected``, no ``__dict__``), as another reactor's port may be."""

    __slots__ = ("_port",)

    def __init__(self, port: Any, delay: float = 0) -> None:
        self._port = port  # (delay: FaultyReactor passes one; no use here)

    def startListening(self) -> None:
        """The port listens already."""

    def stopListening(self) -> defer.Deferred[None] | None:
        stopped: defer.Deferred[None] | None = self._port.stopListening()
        return stopped

    def getHost(self) -> IAddress:
        address: IAddress = self._port.getHost()
        return address


@implementer(IReactorTCP, IReactorTime, IReactorCore, IReactorUDP)
class RecordingReactor:
    """The global reactor, noting the delay of each callLater."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(reactor, name)

    def callLater(self, delay: float, *args: Any, **kwargs: Any) -> Any:
        self.delays.append(delay)
        return reactor.callLater(delay, *args, **kwargs)


@implementer(IReactorTCP, IReactorTime, IReactorCore, IReactorUDP)
class FaultyReactor:
    """The global reactor, whose UDP ports are wrapped in ``port_type``."""

    def __init__(self, port_type: type[Any], delay: float = 0) -> None:
        self.port_type = port_type
        self.delay = delay
        self.ports: list[Any] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(reactor, name)

    def listenUDP(self, *args: Any, **kwargs: Any) -> Any:
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

    async def test_port_whose_stop_fails_falsy(self) -> None:
        """A port whose stop fails with an exception that is false: the exit
        raises that exception."""
        faulty = FaultyReactor(FailsFalsy)
        with self.assertRaises(FalsyError) as caught:
            async with datagrams(reactor=faulty):  # type: ignore[call-overload]
                pass
        self.assertEqual(caught.exception.args, ("the stop failed",))

    async def test_stopped_in_the_block_not_stopped_again(self) -> None:
        """A port the block stopped, and saw stopped, is not stopped again."""
        faulty = FaultyReactor(CountsStops)
        async with datagrams(Collector(), reactor=faulty) as proto:  # type: ignore[call-overload]
            stopped: Any = proto.transport.stopListening()
            await stopped
        self.assertEqual(faulty.ports[0].stops, 0)

    async def test_port_that_is_only_a_listening_port(self) -> None:
        """Another reactor's port with only IListeningPort's methods (no
        connected, no __dict__) is stopped at exit."""
        faulty = FaultyReactor(OnlyAListeningPort)
        proto = Collector()
        async with datagrams(proto, reactor=faulty):  # type: ignore[call-overload]
            port = proto.transport.getHost().port
        self.assertEqual(proto.stopped, 1)
        self.assertTrue(can_bind(port))

    async def test_udp_port_stop_arms_no_timer(self) -> None:
        """The exit arms no timer for a UDP port's stop, which Twisted
        completes on the next reactor turn."""
        recording = RecordingReactor()
        async with datagrams(reactor=recording, timeout=7):  # type: ignore[call-overload]
            pass
        self.assertEqual(recording.delays, [])

    async def test_error_pending_at_the_exit(self) -> None:
        """An error pending on the socket when the block ends is not the
        stream's: a receive() after the block raises ScopeClosed."""
        async with datagrams() as stream:
            port: Any = stream.transport
            port.socket = HostUnreachable(port.socket)
        with self.assertRaises(ScopeClosed):
            stream.receive()

    async def test_error_unreadable_when_the_socket_closes(self) -> None:
        """A socket whose pending error cannot be read, closed under the
        stream, has none: a receive() after raises ScopeClosed."""
        async with datagrams() as stream:
            port: Any = stream.transport
            port.socket = ErrorUnreadable(port.socket)
            await port.stopListening()
            with self.assertRaises(ScopeClosed):
                stream.receive()

    async def test_other_error_when_the_socket_closes(self) -> None:
        """An error other than a refusal, pending when the socket closes under
        the stream, fails the next receive as an OSError of its errno."""
        async with datagrams() as stream:
            port: Any = stream.transport
            port.socket = HostUnreachable(port.socket)
            where = repr(stream)
            await port.stopListening()
            failure = self.failureResultOf(stream.receive(), OSError)
        self.assertEqual(failure.value.errno, errno.EHOSTUNREACH)
        self.assertEqual(
            str(failure.value),
            f"[Errno {errno.EHOSTUNREACH}] receive() on {where}: No route to "
            "host, and the reactor closed the socket on it",
        )


#: How datagrams() begins refusing what is no DatagramProtocol instance.
NOT_A_PROTOCOL = (
    "datagrams() needs a DatagramProtocol instance (or None, for a "
    "cleanconn.DatagramStream), got {!r}."
)

#: Its advice for a stream protocol or factory.
FOR_STREAMS = (
    " That is for a stream transport (TCP, UNIX stream sockets, TLS): "
    "use cleanconn.serving() and cleanconn.connected() for it."
)

#: The error of a DatagramStream used before it was bound, after its name.
NOT_BOUND = (
    ": this stream is not bound to a socket yet; use the one `async with "
    "datagrams() as stream` gives, or bind it with reactor.listenUDP()"
)


class BadInputTests(DatagramTestCase):
    def refusal_of(self, protocol: Any) -> str:
        """The message of the TypeError datagrams(protocol) raises."""
        with self.assertRaises(TypeError) as caught:
            datagrams(protocol)
        return str(caught.exception)

    def test_protocol_class(self) -> None:
        """A DatagramProtocol class instead of an instance says to make one."""
        self.assertEqual(
            self.refusal_of(EchoUDP),
            NOT_A_PROTOCOL.format(EchoUDP)
            + " That is a class: pass an instance, datagrams(EchoUDP()).",
        )

    def test_connected_datagram_protocol(self) -> None:
        """A ConnectedDatagramProtocol is refused, saying what takes one."""
        from twisted.internet.protocol import ConnectedDatagramProtocol

        protocol = ConnectedDatagramProtocol()
        self.assertEqual(
            self.refusal_of(protocol),
            NOT_A_PROTOCOL.format(protocol)
            + " That is a ConnectedDatagramProtocol, which only "
            "reactor.connectUNIXDatagram() takes.",
        )

    def test_something_else(self) -> None:
        """What is no protocol at all, object or class, is refused, saying
        only what is needed."""
        for something in (42, int):
            self.assertEqual(
                self.refusal_of(something), NOT_A_PROTOCOL.format(something)
            )

    def test_unix_must_be_true_or_a_path(self) -> None:
        """unix= takes True or a path."""
        with self.assertRaises(TypeError) as caught:
            datagrams(unix=1)  # type: ignore[call-overload]
        self.assertEqual(
            str(caught.exception),
            "datagrams(): unix must be True (a private temporary directory) or a "
            "socket path, got 1",
        )

    def test_stream_factory(self) -> None:
        """A stream protocol factory points to serving() and connected()."""
        factory = Factory.forProtocol(Echo)
        self.assertEqual(
            self.refusal_of(factory), NOT_A_PROTOCOL.format(factory) + FOR_STREAMS
        )

    def test_stream_protocol(self) -> None:
        """A stream protocol instance points to serving() and connected()."""
        protocol = Echo()
        self.assertEqual(
            self.refusal_of(protocol), NOT_A_PROTOCOL.format(protocol) + FOR_STREAMS
        )

    def test_stream_protocol_class(self) -> None:
        """A stream protocol class points to serving() and connected()."""
        self.assertEqual(
            self.refusal_of(Echo), NOT_A_PROTOCOL.format(Echo) + FOR_STREAMS
        )

    async def test_protocol_bound_already(self) -> None:
        """A protocol already bound to a socket is a ValueError."""
        async with datagrams(Collector()) as proto:
            bound = f"{proto!r} is bound already (to {proto.transport!r})"
            with self.assertRaises(ValueError) as caught:
                datagrams(proto)
        self.assertEqual(
            str(caught.exception),
            f"datagrams(): {bound}; a protocol instance serves one socket here: "
            "give each datagrams() a new one.",
        )

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
        self.assertEqual(
            str(caught.exception),
            "datagrams(): host must be an IP address literal such as '127.0.0.1' "
            "or '::1', got 'localhost'. A socket binds an address, not a name; "
            "for a UNIX datagram socket, pass unix=True or unix=path.",
        )

    def test_host_not_a_string(self) -> None:
        """A host that is not a str is a TypeError."""
        with self.assertRaises(TypeError) as caught:
            datagrams(host=b"127.0.0.1")  # type: ignore[call-overload]
        self.assertEqual(
            str(caught.exception),
            "datagrams(): host must be an IP address literal such as '127.0.0.1' "
            "or '::1', got bytes b'127.0.0.1'",
        )

    async def test_address_not_on_this_machine(self) -> None:
        """A host that is no local address fails the entry with CannotListenError."""
        with self.assertRaises(CannotListenError) as caught:
            async with datagrams(host="192.0.2.1"):  # TEST-NET-1: never local
                self.fail("the block ran")
        self.assertIn("192.0.2.1", str(caught.exception))

    def test_bad_port(self) -> None:
        """A port that is not an int is a TypeError saying so."""
        with self.assertRaises(TypeError) as caught:
            datagrams(port="53")  # type: ignore[call-overload]
        self.assertEqual(
            str(caught.exception),
            "datagrams(): port must be an int (0 for a free port), got str '53'",
        )

    def test_port_range(self) -> None:
        """port= takes 0 to 65535; -1 or 65536 is a ValueError saying so."""
        datagrams(port=65535)
        for port in (-1, 65536):
            with self.assertRaises(ValueError) as caught:
                datagrams(port=port)
            self.assertEqual(
                str(caught.exception),
                f"datagrams(): port must be 0 (a free port) to 65535, got {port}",
            )

    def test_bad_connect(self) -> None:
        """connect= that is no (host, port) is a TypeError naming the form."""
        for connect in ("127.0.0.1:53", ("127.0.0.1",)):
            with self.assertRaises(TypeError) as caught:
                datagrams(connect=connect)  # type: ignore[arg-type]
            self.assertEqual(
                str(caught.exception),
                "datagrams(): connect: the address must be (host, port), such as "
                "('127.0.0.1', 9999), or an IPv4Address or IPv6Address, got "
                f"{type(connect).__name__} {connect!r}",
            )

    def test_connect_port_not_an_int(self) -> None:
        """connect= with a port that is no int is a TypeError naming the form."""
        with self.assertRaises(TypeError) as caught:
            datagrams(connect=("127.0.0.1", "53"))  # type: ignore[arg-type]
        self.assertEqual(
            str(caught.exception),
            "datagrams(): connect: the address must be (host, port) with host a "
            "str and port an int, got ('127.0.0.1', '53')",
        )

    def test_connect_to_the_other_family(self) -> None:
        """connect= to ::1 from an IPv4 socket is a ValueError saying what to bind."""
        with self.assertRaises(ValueError) as caught:
            datagrams(connect=("::1", 53))
        self.assertEqual(
            str(caught.exception),
            "datagrams(): connect: ('::1', 53) is not IPv4, and this socket is "
            "IPv4; bind one of the address's family (datagrams(host='::1'))",
        )

    def test_connect_from_ipv6_to_ipv4(self) -> None:
        """connect= to 127.0.0.1 from an IPv6 socket is a ValueError saying what
        to bind."""
        with self.assertRaises(ValueError) as caught:
            datagrams(host="::1", connect=("127.0.0.1", 53))
        self.assertEqual(
            str(caught.exception),
            "datagrams(): connect: ('127.0.0.1', 53) is not IPv6, and this socket "
            "is IPv6; bind one of the address's family (datagrams(host='127.0.0.1'))",
        )

    def test_connect_to_port_zero(self) -> None:
        """connect= to port 0 is a ValueError."""
        with self.assertRaises(ValueError):
            datagrams(connect=("127.0.0.1", 0))

    def test_connect_port_range(self) -> None:
        """connect= takes ports 1 to 65535; 65536 is a ValueError saying so."""
        datagrams(connect=("127.0.0.1", 1))
        datagrams(connect=("127.0.0.1", 65535))
        with self.assertRaises(ValueError) as caught:
            datagrams(connect=("127.0.0.1", 65536))
        self.assertEqual(
            str(caught.exception),
            "datagrams(): connect: the port must be 1 to 65535, got "
            "('127.0.0.1', 65536)",
        )

    def test_unix_with_host_or_connect(self) -> None:
        """unix= with host= or connect= is a TypeError."""
        with self.assertRaises(TypeError) as caught:
            datagrams(unix=True, host="::1")
        self.assertEqual(
            str(caught.exception),
            "datagrams(): give either host=/port= (UDP) or unix= (a UNIX datagram "
            "socket), not both",
        )
        with self.assertRaises(TypeError) as caught:
            datagrams(unix=True, connect=("127.0.0.1", 53))  # type: ignore[call-overload]
        self.assertEqual(
            str(caught.exception),
            "datagrams(): connect= is for UDP; a UNIX datagram socket sends to a "
            "path each time: stream.send(data, path)",
        )

    def test_empty_unix_path(self) -> None:
        """unix='' is a ValueError, not a UDP socket."""
        with self.assertRaises(ValueError) as caught:
            datagrams(unix="")
        self.assertEqual(
            str(caught.exception),
            "datagrams(): unix='' is no socket path; give unix=True for a socket "
            "in a private temporary directory, or the path to bind",
        )

    def test_bad_timeout(self) -> None:
        """A timeout that is not positive is a ValueError."""
        with self.assertRaises(ValueError):
            datagrams(timeout=0)

    def test_reactor_without_udp(self) -> None:
        """A reactor that cannot bind UDP is a TypeError naming IReactorUDP."""
        memory = MemoryReactorClock()
        with self.assertRaises(TypeError) as caught:
            datagrams(reactor=memory)  # type: ignore[call-overload]
        self.assertEqual(
            str(caught.exception),
            f"datagrams(): the reactor {memory!r} does not provide IReactorUDP, so "
            "it cannot bind a UDP socket. Pass a reactor that does (every Twisted "
            "reactor on a POSIX system does), or leave reactor= out.",
        )

    def test_reactor_without_unix_datagrams(self) -> None:
        """A reactor that cannot bind a UNIX datagram socket is a TypeError
        naming IReactorUNIXDatagram."""
        memory = MemoryReactorClock()
        with self.assertRaises(TypeError) as caught:
            datagrams(unix=True, reactor=memory)  # type: ignore[call-overload]
        self.assertEqual(
            str(caught.exception),
            f"datagrams(): the reactor {memory!r} does not provide "
            "IReactorUNIXDatagram, so it cannot bind a UNIX datagram socket. Pass "
            "a reactor that does (every Twisted reactor on a POSIX system does), "
            "or leave reactor= out.",
        )

    async def test_send_text(self) -> None:
        """send() of a str is a TypeError saying to encode it."""
        async with datagrams() as stream:
            with self.assertRaises(TypeError) as caught:
                stream.send("text", stream.address)  # type: ignore[arg-type]
        self.assertEqual(
            str(caught.exception),
            "DatagramStream.send() takes bytes, got str 'text'; encode text "
            "first (data.encode())",
        )

    async def test_send_without_address(self) -> None:
        """send() with no address on a stream not connected is a TypeError."""
        async with datagrams() as stream:
            with self.assertRaises(TypeError) as caught:
                stream.send(b"where to?")
        self.assertEqual(
            str(caught.exception),
            "DatagramStream.send(): this stream is not connected, so each datagram "
            "needs an address: send(data, (host, port)), or connect the stream "
            "with datagrams(connect=(host, port)).",
        )

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
        self.assertEqual(
            str(caught.exception),
            "DatagramStream.send(): 'localhost' is not an IP address literal; "
            "datagrams go to addresses, not names: use '127.0.0.1' or '::1'",
        )

    async def test_bad_receive_timeout(self) -> None:
        """receive(timeout=0) is a ValueError."""
        async with datagrams() as stream:
            with self.assertRaises(ValueError) as caught:
                stream.receive(timeout=0)
        self.assertEqual(
            str(caught.exception),
            "DatagramStream.receive(): timeout must be a positive, finite number "
            "of seconds (it bounds every exit), got 0",
        )

    def test_address_of_a_stream_not_bound(self) -> None:
        """The address of a DatagramStream never bound is a RuntimeError."""
        with self.assertRaises(RuntimeError) as caught:
            DatagramStream().address  # noqa: B018
        self.assertEqual(str(caught.exception), "DatagramStream.address" + NOT_BOUND)

    def test_send_on_a_stream_not_bound(self) -> None:
        """send() on a DatagramStream never bound is a RuntimeError."""
        with self.assertRaises(RuntimeError) as caught:
            DatagramStream().send(b"x", ("127.0.0.1", 9))
        self.assertEqual(str(caught.exception), "DatagramStream.send" + NOT_BOUND)

    def test_repr_of_a_stream_not_bound(self) -> None:
        """A DatagramStream never bound says so in its repr."""
        self.assertEqual(
            repr(DatagramStream()), "<cleanconn.DatagramStream (not bound)>"
        )

    def test_stream_not_bound(self) -> None:
        """A DatagramStream never bound says how to get one that is."""
        with self.assertRaises(RuntimeError) as caught:
            DatagramStream().receive()
        self.assertEqual(str(caught.exception), "DatagramStream.receive" + NOT_BOUND)

    def test_serving_a_datagram_protocol(self) -> None:
        """serving() given a DatagramProtocol points to cleanconn.datagrams()."""
        with self.assertRaises(TypeError) as caught:
            serving(EchoUDP())  # type: ignore[call-overload]
        self.assertIn("Use cleanconn.datagrams() for it", str(caught.exception))
