"""proxied(): a fault-injecting proxy on real loopback sockets, each fault
proved by what a client and a server see, and its exit by what is left."""

from __future__ import annotations

import contextlib
import socket
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.error import (
    ConnectionDone,
    ConnectionLost,
    ConnectionRefusedError,
)
from twisted.internet.interfaces import IPushProducer, IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.selectreactor import SelectReactor
from twisted.protocols.basic import LineReceiver
from twisted.protocols.policies import WrappingFactory
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest
from twisted.web.resource import Resource
from twisted.web.server import Site
from zope.interface import implementer

from cleanconn import (
    CleanupTimeout,
    DeadlineExceeded,
    Fault,
    FragmentationFailed,
    Proxy,
    ReactorNotRunning,
    ScopeClosed,
    ServingPort,
    Stream,
    ThrowawayCA,
    WaitTimeout,
    _proxy,
    bandwidth,
    base_url,
    blackhole,
    clean_reactor,
    connected,
    deadline,
    http_client,
    latency,
    limit_data,
    lost,
    proxied,
    reset_peer,
    serving,
    slicer,
    slow_close,
    stop_reading,
    sweep_fragmentation,
)
from cleanconn._connections import _live
from cleanconn._proxy import HIGH_WATER, RESET_WAIT, Pipe
from cleanconn._tracked import unsent_bytes

from ._helpers import CountingFactory, Recorder, TestCase, client_factory, turn
from .test_faults import HalfCloseable, _Addressed
from .test_scope_base import _Frozen
from .test_transports import has_ipv6

#: 16 MB of bytes that are not all alike, so that reordering would show.
BIG = bytes(range(256)) * 256 * 256

#: A request longer than any piece the random chunking of the sweep cuts.
REQUEST = b"PING " + b"0123456789" * 4 + b"\r\n"


def now() -> float:
    """The reactor's time: what the proxy's timers count in."""
    return float(reactor.seconds())


async def turns(count: int) -> None:
    """Let the reactor turn ``count`` times (an ordering step, not a wait)."""
    for _ in range(count):
        await turn()


def kernel_limit(name: str) -> int:
    """The most a TCP socket buffer can grow to (``tcp_wmem``/``tcp_rmem``)."""
    try:
        with open(f"/proc/sys/net/ipv4/{name}") as f:
            return int(f.read().split()[2])
    except (OSError, ValueError, IndexError):
        raise SkipTest(f"the kernel's {name} limit is unknown here") from None


# Servers and clients ----------------------------------------------------------


class PlainEcho(Protocol):
    """Echoes, keeping nothing (for bulk transfers)."""

    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)


class PlainEchoRecorder(Recorder):
    """Echoes and records (for small exchanges)."""

    def dataReceived(self, data: bytes) -> None:
        super().dataReceived(data)
        self.transport.write(data)


class Hello(Resource):
    """Says hello to every GET."""

    isLeaf = True

    def render_GET(self, request: Any) -> bytes:
        return b"hello"


class Chunks(Recorder):
    """Records each ``dataReceived`` call's bytes (and when it came)."""

    def connectionMade(self) -> None:
        self.chunks: list[bytes] = []
        self.times: list[float] = []
        super().connectionMade()

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)
        self.times.append(now())
        super().dataReceived(data)


class LineAnswer(Chunks):
    """Records chunks; answers each whole line with ``ANSWER`` in one write."""

    ANSWER = b"0123456789abcdef\n"

    def dataReceived(self, data: bytes) -> None:
        super().dataReceived(data)
        for _ in range(data.count(b"\n")):
            self.transport.write(self.ANSWER)


class Sends(Recorder):
    """Sends the factory's ``payload`` once connected, and stays open."""

    def connectionMade(self) -> None:
        super().connectionMade()
        self.transport.write(self.factory.payload)


class SendsThenCloses(Recorder):
    """Sends the factory's ``payload``, then closes (noting when)."""

    def connectionMade(self) -> None:
        super().connectionMade()
        self.transport.write(self.factory.payload)
        self.closed_at = now()
        self.transport.loseConnection()


class SendsThenAborts(Recorder):
    """Sends the factory's ``payload``; resets the connection once told to
    (by any byte from the client, which has the payload by then)."""

    def connectionMade(self) -> None:
        super().connectionMade()
        self.transport.write(self.factory.payload)

    def dataReceived(self, data: bytes) -> None:
        super().dataReceived(data)
        self.transport.abortConnection()


class Acks(Recorder):
    """Says ``k`` once it received 10 bytes."""

    def dataReceived(self, data: bytes) -> None:
        super().dataReceived(data)
        if len(self.data) >= 10:
            self.transport.write(b"k")


class AnswersTheEnd(HalfCloseable):
    """Once the client closed its side: answers ``bye``, then closes."""

    def readConnectionLost(self) -> None:
        super().readConnectionLost()
        self.transport.write(b"bye")
        self.transport.loseConnection()


def sending(protocol: type[Protocol], payload: bytes) -> CountingFactory:
    factory = CountingFactory(protocol)
    factory.payload = payload
    return factory


class NaivePing(Protocol):
    """Wrong: takes each dataReceived for one whole ``PING ...`` line."""

    def dataReceived(self, data: bytes) -> None:
        whole = data.startswith(b"PING ") and data.endswith(b"\r\n")
        self.transport.write(b"PONG\r\n" if whole else b"ERR\r\n")


class LinePing(LineReceiver):
    """Right: answers each ``PING ...`` line, however it was cut."""

    def lineReceived(self, line: bytes) -> None:
        self.sendLine(b"PONG" if line.startswith(b"PING ") else b"ERR")


class Sink(Protocol):
    """Counts what it receives; with the factory's ``paused``, reads nothing
    until :meth:`resume`. ``got`` fires once ``factory.expected`` came,
    ``lost`` once it is lost (``reason`` says how)."""

    def connectionMade(self) -> None:
        self.count = 0
        self.got: defer.Deferred[None] = defer.Deferred()
        self.lost: defer.Deferred[None] = defer.Deferred()
        self.reason: Failure | None = None
        self.factory.built.append(self)
        if self.factory.paused:
            self.transport.pauseProducing()
        made = self.factory.made
        if not made.called:
            made.callback(self)

    def dataReceived(self, data: bytes) -> None:
        self.count += len(data)
        if self.count >= self.factory.expected and not self.got.called:
            self.got.callback(None)

    def resume(self) -> None:
        self.transport.resumeProducing()

    def connectionLost(self, reason: Failure = ConnectionDone) -> None:  # type: ignore[assignment]
        self.reason = reason
        self.lost.callback(None)


def sink(expected: int, paused: bool = False) -> Any:
    factory: Any = Factory.forProtocol(Sink)
    factory.expected = expected
    factory.paused = paused
    factory.built = []
    factory.made = defer.Deferred()
    return factory


@implementer(IPushProducer)
class Flood(Protocol):
    """Writes the factory's ``total`` bytes as fast as its transport takes them."""

    def connectionMade(self) -> None:
        made = self.factory.made
        if not made.called:
            made.callback(self)
        self.sent = 0
        self.transport.registerProducer(self, True)
        self.resumeProducing()

    def resumeProducing(self) -> None:
        self._going = True
        total = self.factory.total
        while self._going and self.sent < total:
            n = min(65536, total - self.sent)
            self.sent += n
            self.transport.write(b"f" * n)

    def pauseProducing(self) -> None:
        self._going = False

    def stopProducing(self) -> None:
        self._going = False


def flood(total: int) -> Any:
    factory: Any = Factory.forProtocol(Flood)
    factory.total = total
    factory.made = defer.Deferred()
    return factory


def when_held(test: TestCase, check: Callable[[Pipe], bool]) -> defer.Deferred[Pipe]:
    """Fires with the first pipe that stops reading from its source while
    ``check(pipe)`` is true."""
    held: defer.Deferred[Pipe] = defer.Deferred()
    original = Pipe.hold

    def hold(pipe: Pipe, why: object) -> None:
        original(pipe, why)
        if not held.called and check(pipe):
            held.callback(pipe)

    test.patch(Pipe, "hold", hold)
    return held


def peak_held(test: TestCase) -> list[int]:
    """Patch the proxy to note, after each chunk it reads, the most bytes
    one direction held (queued, and unsent in the destination's transport);
    the list has that peak as its only item."""
    peak = [0]
    original = Pipe.feed

    def feed(pipe: Pipe, data: bytes) -> None:
        original(pipe, data)
        dest = pipe.dest
        unsent = unsent_bytes(dest.transport) if dest is not None else 0
        peak[0] = max(peak[0], pipe._queued + (unsent or 0))

    test.patch(Pipe, "feed", feed)
    return peak


def when_queued(direction: Any, least: int = 0) -> defer.Deferred[None]:
    """Fires once a pipe of ``direction`` holds bytes back, ``least`` of
    them at least (patched in)."""
    queued: defer.Deferred[None] = defer.Deferred()
    original = Pipe._push

    def push(pipe: Pipe, at: float, kind: str, item: Any) -> None:
        original(pipe, at, kind, item)
        if pipe.direction is direction and pipe._queued >= least and not queued.called:
            queued.callback(None)

    Pipe._push = push  # type: ignore[method-assign,assignment]

    def restore(result: object) -> object:
        Pipe._push = original  # type: ignore[method-assign]
        return result

    queued.addBoth(restore)
    return queued


def when_delivered(test: TestCase, direction: Any, total: int) -> defer.Deferred[None]:
    """Fires once ``direction`` delivered ``total`` bytes (patched in)."""
    delivered: defer.Deferred[None] = defer.Deferred()
    original = Pipe.feed

    def feed(pipe: Pipe, data: bytes) -> None:
        original(pipe, data)
        if direction.bytes >= total and not delivered.called:
            delivered.callback(None)

    test.patch(Pipe, "feed", feed)
    return delivered


def the_link(proxy: Proxy) -> Any:
    """The one connection through ``proxy``."""
    [link] = proxy._links
    return link


async def outcome_of_connection(proxy: Proxy) -> Recorder:
    """Connect a recording client through ``proxy`` and wait until it is lost."""
    factory = client_factory()
    async with connected(proxy, factory) as client:
        await client.lost
    assert isinstance(client, Recorder)
    return client


def is_reset(reason: Failure | None) -> bool:
    """A connection lost to a reset: ConnectionLost, not a clean close."""
    return (
        reason is not None
        and reason.check(ConnectionLost) is not None
        and reason.check(ConnectionDone) is None
    )


async def raw_client(proxy: Proxy) -> Recorder:
    """A client of the test's own (not a cleanconn scope's) through ``proxy``."""
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", proxy.getHost().port)
    client = await endpoint.connect(client_factory())
    assert isinstance(client, Recorder)
    return client


def adopt(raw: socket.socket, paused: bool) -> Any:
    """Hand the connected ``raw`` socket to the reactor, read by a Sink."""
    client = sink(0, paused=paused).buildProtocol(None)
    reactor.adoptStreamConnection(raw.fileno(), socket.AF_INET, OneProtocol(client))
    raw.close()
    return client


class OneProtocol(Factory):
    """Builds ``protocol``, once (for adoptStreamConnection)."""

    def __init__(self, protocol: Protocol) -> None:
        self._protocol = protocol

    def buildProtocol(self, addr: Any) -> Protocol:
        return self._protocol


@asynccontextmanager
async def stuck_behind(
    test: TestCase, port: Any, raw: socket.socket, timeout: float
) -> AsyncIterator[Proxy]:
    """
    A proxy to ``port`` (whose server floods) with ``raw`` connected to it,
    a client that does not read: once in the block, the proxy's leg to it
    holds bytes it can never send (see :func:`get_stuck`).
    """
    async with proxied(port, downstream=[stop_reading()], timeout=timeout) as proxy:
        await get_stuck(test, proxy, port, raw)
        yield proxy


async def get_stuck(
    test: TestCase, proxy: Proxy, port: Any, raw: socket.socket
) -> None:
    """
    Connect ``raw``, a client that does not read, to ``proxy`` (whose
    downstream has ``stop_reading()``, and whose target ``port`` floods);
    return once the proxy's leg to it holds bytes it can never send. The
    sockets between hold little (both buffers are set small), and the leg
    holds more than they can take.
    """
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.connect(("127.0.0.1", proxy.getHost().port))
    await port.factory.made  # the server floods; the proxy does not read it
    down = the_link(proxy).down.transport
    down.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    between = down.getHandle().getsockopt(
        socket.SOL_SOCKET, socket.SO_SNDBUF
    ) + raw.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    held = when_held(
        test,
        lambda pipe: (
            pipe.direction is proxy.downstream
            and (unsent_bytes(down) or 0) > between + 16384
        ),
    )
    proxy.downstream.clear()
    await held


@implementer(IStreamClientEndpoint)
class NeverConnects:
    """An endpoint whose connects never complete, until cancelled."""

    def __init__(self) -> None:
        self.asked: defer.Deferred[None] = defer.Deferred()
        self.cancelled = False

    def connect(self, factory: Any) -> defer.Deferred[Any]:
        def cancel(d: defer.Deferred[Any]) -> None:
            self.cancelled = True

        if not self.asked.called:
            self.asked.callback(None)
        return defer.Deferred(cancel)


async def upstream_timing(faults: list[Fault], payload: bytes) -> tuple[Any, float]:
    """Write ``payload`` through a proxy with ``upstream=faults``, once the
    server is connected: the server (its chunks and when each came), and
    when the write was made."""
    servers = CountingFactory(Chunks)
    async with serving(servers) as port:
        async with proxied(port, upstream=faults) as proxy:
            async with connected(proxy) as stream:
                await servers.made()
                started = now()
                stream.write(payload)
                [server] = servers.built
                await server.received(len(payload))
    return server, started


async def delays(test: TestCase, faults: list[Fault], seed: int) -> list[float]:
    """The delays the last of ``faults`` gives five one-byte chunks each
    way, through a proxy with ``seed``."""
    fault = faults[-1]
    seen: list[float] = []
    original = fault.pieces

    def pieces(pipe: Any, given: Any, rng: Any) -> Any:
        out = original(pipe, given, rng)
        seen.extend(delay for delay, _ in out)
        return out

    test.patch(fault, "pieces", pieces)
    async with serving(Factory.forProtocol(PlainEcho)) as port:
        async with proxied(port, faults=faults, seed=seed) as proxy:
            test.assertEqual(proxy.seed, seed)
            async with connected(proxy) as stream:
                for i in range(5):  # one chunk at a time, each way
                    stream.write(b"%d" % i)
                    await stream.readexactly(1)
    return seen


# No faults ---------------------------------------------------------------------


class PassThroughTests(TestCase):
    async def test_echo_round_trip(self) -> None:
        """With no faults, an echo through the proxy comes back whole."""
        async with serving(Factory.forProtocol(PlainEcho)) as port:
            async with proxied(port) as proxy, connected(proxy) as stream:
                self.assertIsInstance(stream, Stream)
                stream.write(b"hello")
                self.assertEqual(await stream.readexactly(5), b"hello")

    async def test_large_transfer_both_directions(self) -> None:
        """16 MB goes up and comes back down intact and in order."""
        async with serving(Factory.forProtocol(PlainEcho)) as port:
            async with proxied(port) as proxy, connected(proxy) as stream:
                stream.write(BIG)
                self.assertTrue(await stream.readexactly(len(BIG)) == BIG)
        self.assertEqual(
            (proxy.upstream.bytes, proxy.downstream.bytes), (len(BIG),) * 2
        )

    async def test_large_transfer_through_faults(self) -> None:
        """1 MB cut in random pieces, each delayed with jitter, comes back intact."""
        data = BIG[: 1 << 20]
        faults = [slicer(4000, variation=3000), latency(0.001, jitter=0.001)]
        async with serving(Factory.forProtocol(PlainEcho)) as port:
            async with (
                proxied(port, faults=faults) as proxy,
                connected(proxy) as stream,
            ):
                stream.write(data)
                self.assertTrue(await stream.readexactly(len(data)) == data)

    async def test_legs_send_each_write_at_once(self) -> None:
        """Both legs of a connection have Nagle's algorithm off (TCP_NODELAY),
        so that small writes and a slicer's pieces are not merged or held."""
        async with serving(Factory.forProtocol(PlainEcho)) as port:
            async with proxied(port) as proxy, connected(proxy) as stream:
                stream.write(b"x")
                await stream.readexactly(1)
                link = the_link(proxy)
                self.assertEqual(
                    [
                        leg.transport.getHandle().getsockopt(
                            socket.IPPROTO_TCP, socket.TCP_NODELAY
                        )
                        for leg in (link.down, link.up)
                    ],
                    [1, 1],
                )

    async def test_stats(self) -> None:
        """Direction.bytes counts what was delivered each way; connections, accepts."""
        async with serving(Factory.forProtocol(PlainEcho)) as port:
            async with proxied(port) as proxy:
                self.assertEqual((proxy.connections, proxy.upstream.bytes), (0, 0))
                for message in (b"hello", b"goodbye"):
                    async with connected(proxy) as stream:
                        stream.write(message)
                        await stream.readexactly(len(message))
                self.assertEqual(proxy.connections, 2)
                self.assertEqual(proxy.upstream.bytes, 12)
                self.assertEqual(proxy.downstream.bytes, 12)
                self.assertIn("upstream: no faults, 12 bytes", repr(proxy.upstream))

    async def test_flow_control_backs_up_into_the_client(self) -> None:
        """A server that stops reading: the proxy stops reading too, holding a
        bounded amount, and the rest stays in the client's buffers."""
        wmem, rmem = kernel_limit("tcp_wmem"), kernel_limit("tcp_rmem")
        # What four socket buffers (client, proxy both ways, server) can take.
        kernel = 2 * (wmem + rmem)
        bound = 2 * HIGH_WATER
        total = kernel + 2 * bound + (8 << 20)
        servers = sink(total, paused=True)
        peak = peak_held(self)
        async with serving(servers) as port, proxied(port) as proxy:
            held = when_held(self, lambda pipe: pipe.direction is proxy.upstream)
            async with connected(proxy, client_factory()) as client:
                client.transport.write(b"u" * total)
                await held
                await turns(20)
                left = unsent_bytes(client.transport) or 0
                self.assertGreater(left, total - kernel - bound)
                self.assertLessEqual(peak[0], bound)
                [server] = servers.built
                server.resume()
                await server.got
        self.assertEqual(server.count, total)
        self.assertLessEqual(peak[0], bound)

    async def test_half_close_passes_through(self) -> None:
        """A client that closes its side still gets the server's answer to
        that; once the server closes too, the proxy closes both legs."""
        servers = CountingFactory(AnswersTheEnd)
        async with serving(servers) as port:
            async with proxied(port, upstream=[slicer(2)]) as proxy:
                async with connected(proxy, CountingFactory(HalfCloseable)) as client:
                    await servers.made()
                    [server] = servers.built
                    link = the_link(proxy)
                    client.transport.write(b"hi")
                    client.transport.loseWriteConnection()
                    await server.read_lost
                    # The end went through the slicer's queue: nothing is left.
                    self.assertEqual(
                        repr(link.upstream),
                        "<cleanconn proxy pipe upstream: 0 bytes queued>",
                    )
                    await client.read_lost
                    await lost(link.down)
                    await lost(link.up)
                    self.assertEqual(proxy._links, {})
        self.assertEqual((server.data, client.data), (b"hi", b"bye"))

    async def test_reads_again_once_half_is_delivered(self) -> None:
        """A direction that held more than HIGH_WATER reads from the sender
        again as soon as half of HIGH_WATER is left to deliver."""
        half = HIGH_WATER // 2
        released: list[int] = []
        original = Pipe.release

        def release(pipe: Pipe, why: object) -> None:
            if why == _proxy._QUEUE and why in pipe._holds:
                released.append(pipe._queued)
            original(pipe, why)

        self.patch(Pipe, "release", release)
        servers = sink(HIGH_WATER + 1)
        async with serving(servers) as port:
            async with proxied(port, upstream=[latency(0.1)]) as proxy:
                async with connected(proxy, client_factory()) as client:
                    server = await servers.made
                    client.transport.write(b"a" * (half + 1))
                    await when_queued(proxy.upstream, half + 1)
                    # The rest is due 0.2 s after the first part: once that
                    # part is delivered, exactly half is left, held.
                    proxy.upstream.clear()
                    proxy.upstream.add(latency(0.3))
                    client.transport.write(b"b" * half)
                    await server.got
        self.assertEqual(released, [half])

    async def test_flow_control_with_a_fault_queue(self) -> None:
        """Bytes delayed by a fault: the proxy's queue stays under its high water."""
        total = 8 * HIGH_WATER
        servers = sink(total)
        peak = peak_held(self)
        async with serving(servers) as port:
            async with proxied(port, upstream=[latency(0.05)]) as proxy:
                held = when_held(self, lambda pipe: pipe._queued > HIGH_WATER)
                async with connected(proxy, client_factory()) as client:
                    client.transport.write(b"q" * total)
                    await held
                    await (await servers.made).got
        self.assertLessEqual(peak[0], HIGH_WATER + 4 * 65536)


# Each fault ----------------------------------------------------------------------


class LatencyTests(TestCase):
    async def test_latency_delays_each_direction(self) -> None:
        """latency(0.2) both ways: a round trip takes at least 0.4 s."""
        async with serving(Factory.forProtocol(PlainEcho)) as port:
            async with proxied(port, faults=[latency(0.2)]) as proxy:
                async with connected(proxy) as stream:
                    started = now()
                    stream.write(b"ping")
                    await stream.readexactly(4)
                    self.assertGreaterEqual(now() - started, 0.4)

    async def test_upstream_latency_only(self) -> None:
        """latency(0.2) upstream: the server gets the bytes 0.2 s later at least."""
        server, started = await upstream_timing([latency(0.2)], b"ping")
        self.assertGreaterEqual(server.times[0] - started, 0.2)

    async def test_jitter_is_reproducible_with_a_seed(self) -> None:
        """The same seed gives the same jittered delays; another seed others."""
        first = await delays(self, [latency(0.05, jitter=0.04)], 1234)
        self.assertEqual(len(first), 10)
        self.assertEqual(await delays(self, [latency(0.05, jitter=0.04)], 1234), first)
        self.assertNotEqual(
            await delays(self, [latency(0.05, jitter=0.04)], 4321), first
        )
        for delay in first:
            self.assertTrue(0.01 <= delay <= 0.09, delay)

    async def test_no_jitter_is_exact(self) -> None:
        """latency(0.05) without jitter delays every chunk by 0.05 s exactly."""
        self.assertEqual(await delays(self, [latency(0.05)], 1), [0.05] * 10)

    async def test_no_jitter_takes_no_random_numbers(self) -> None:
        """A latency without jitter leaves the seed's numbers to the faults
        after it: their jitter is the same as without it."""
        alone = await delays(self, [latency(0.05, jitter=0.04)], 99)
        after = await delays(self, [latency(0), latency(0.05, jitter=0.04)], 99)
        self.assertEqual(after, alone)

    async def test_jitter_keeps_order(self) -> None:
        """Writes delayed by random amounts still arrive in the order written."""
        messages = b"".join(b"%03d," % i for i in range(100))
        async with serving(Factory.forProtocol(PlainEcho)) as port:
            faults = [latency(0.01, jitter=0.01)]
            async with (
                proxied(port, faults=faults) as proxy,
                connected(proxy) as stream,
            ):
                for i in range(100):
                    stream.write(b"%03d," % i)
                    if i % 10 == 0:
                        await turn()
                self.assertEqual(await stream.readexactly(len(messages)), messages)


class BandwidthTests(TestCase):
    async def test_bandwidth_takes_at_least_size_over_rate(self) -> None:
        """bandwidth(10000) upstream: 2000 bytes in four writes take 0.2 s at least."""
        servers = CountingFactory(Chunks)
        async with serving(servers) as port:
            async with proxied(port, upstream=[bandwidth(10000)]) as proxy:
                async with connected(proxy) as stream:
                    await servers.made()
                    started = now()
                    for _ in range(4):
                        stream.write(b"b" * 500)
                        await turn()
                    [server] = servers.built
                    self.assertEqual(await server.received(2000), b"b" * 2000)
                    self.assertGreaterEqual(server.times[-1] - started, 0.2)

    async def test_bandwidth_after_latency_keeps_the_delay(self) -> None:
        """latency(0.2) then bandwidth(): the bandwidth does not undo the delay."""
        faults = [latency(0.2), bandwidth(1e6)]
        server, started = await upstream_timing(faults, b"ping")
        self.assertGreaterEqual(server.times[0] - started, 0.2)


class SlicerTests(TestCase):
    async def test_slicer_breaks_a_naive_protocol(self) -> None:
        """A server that takes each dataReceived for a whole line fails."""
        async with serving(Factory.forProtocol(NaivePing)) as port:
            async with proxied(port, upstream=[slicer(1)]) as proxy:
                async with connected(proxy) as stream:
                    stream.write(REQUEST)
                    self.assertEqual(await stream.readline(), b"ERR\r\n")
            # The same exchange without the proxy passes: loopback is kind.
            async with connected(port) as stream:
                stream.write(REQUEST)
                self.assertEqual(await stream.readline(), b"PONG\r\n")

    async def test_slicer_passes_a_line_receiver(self) -> None:
        """A LineReceiver answers correctly, whatever the chunking, both ways."""
        async with serving(Factory.forProtocol(LinePing)) as port:
            async with proxied(port, faults=[slicer(1)]) as proxy:
                async with connected(proxy) as stream:
                    for _ in range(3):
                        stream.write(REQUEST)
                        self.assertEqual(await stream.readline(), b"PONG\r\n")

    async def test_pieces_arrive_as_separate_calls(self) -> None:
        """slicer(3): each piece is a dataReceived call of its own."""
        servers = CountingFactory(Chunks)
        async with serving(servers) as port:
            async with proxied(port, upstream=[slicer(3)]) as proxy:
                async with connected(proxy) as stream:
                    await servers.made()
                    stream.write(b"abcdefghij")
                    [server] = servers.built
                    await server.received(10)
                    self.assertEqual(server.chunks, [b"abc", b"def", b"ghi", b"j"])
                    # Every piece is counted, and none is left queued.
                    self.assertEqual(proxy.upstream.bytes, 10)
                    self.assertEqual(
                        repr(the_link(proxy).upstream),
                        "<cleanconn proxy pipe upstream: 0 bytes queued>",
                    )

    async def test_one_piece_per_byte(self) -> None:
        """slicer(1) makes one piece of a one-byte chunk, due at once."""
        self.assertEqual(await delays(self, [slicer(1)], 1), [0.0] * 10)

    async def test_no_variation_takes_no_random_numbers(self) -> None:
        """A slicer without variation leaves the seed's numbers to the faults
        after it: their jitter is the same as without it."""
        alone = await delays(self, [latency(0.05, jitter=0.04)], 99)
        after = await delays(self, [slicer(1), latency(0.05, jitter=0.04)], 99)
        self.assertEqual(after, alone)

    async def test_variation_stays_in_bounds(self) -> None:
        """slicer(5, variation=3): pieces of 2 to 8 bytes (the last one of a
        chunk, what is left), together intact."""
        servers = CountingFactory(Chunks)
        data = bytes(range(200))
        async with serving(servers) as port:
            faults = [slicer(5, variation=3)]
            async with proxied(port, upstream=faults) as proxy, connected(proxy) as s:
                await servers.made()
                s.write(data)
                [server] = servers.built
                self.assertEqual(await server.received(len(data)), data)
        # One write on loopback is one chunk for the proxy to cut.
        sizes = [len(chunk) for chunk in server.chunks]
        self.assertTrue(set(sizes[:-1]) <= set(range(2, 9)), sizes)
        self.assertTrue(1 <= sizes[-1] <= 8, sizes)
        self.assertGreater(len(set(sizes)), 1)

    async def test_delay_spaces_the_pieces(self) -> None:
        """slicer(1, delay=0.02): ten bytes take 0.18 s at least to arrive."""
        servers = CountingFactory(Chunks)
        async with serving(servers) as port:
            faults = [slicer(1, delay=0.02)]
            async with proxied(port, upstream=faults) as proxy, connected(proxy) as s:
                await servers.made()
                started = now()
                s.write(b"0123456789")
                [server] = servers.built
                await server.received(10)
                self.assertGreaterEqual(server.times[-1] - started, 0.18)
                self.assertEqual(len(server.chunks), 10)

    async def test_delay_spaces_pieces_across_writes(self) -> None:
        """slicer(1, delay=0.05): two writes read apart still arrive one
        piece every 0.05 s, not bunched where the second one starts."""
        servers = CountingFactory(Chunks)
        async with serving(servers) as port:
            faults = [slicer(1, delay=0.05)]
            async with proxied(port, upstream=faults) as proxy, connected(proxy) as s:
                await servers.made()
                [server] = servers.built
                s.write(b"abc")
                await server.received(1)  # the first piece: the rest still held
                s.write(b"def")
                await server.received(6)
        gaps = [b - a for a, b in zip(server.times, server.times[1:], strict=False)]
        self.assertEqual(len(server.chunks), 6)
        # Each piece is due 0.05 s after the one before (one may arrive a
        # little late, so the next gap is a little short); bunched pieces
        # would arrive together.
        self.assertTrue(all(gap >= 0.025 for gap in gaps), gaps)
        self.assertGreaterEqual(server.times[-1] - server.times[0], 0.24)


class StopReadingTests(TestCase):
    async def test_holds_the_sender_back_until_removed(self) -> None:
        """stop_reading(): the proxy reads nothing, the client's bytes wait in
        its own buffers; removed, they all arrive."""
        wmem, rmem = kernel_limit("tcp_wmem"), kernel_limit("tcp_rmem")
        total = wmem + rmem + (4 << 20)  # more than the two buffers between
        servers = sink(total)
        async with serving(servers) as port, proxied(port) as proxy:
            async with connected(proxy, client_factory()) as client:
                server = await servers.made
                fault = stop_reading()
                proxy.upstream.add(fault)
                client.transport.write(b"s" * total)
                await turns(20)
                link = the_link(proxy)
                self.assertNotIn(link.down.transport, reactor.getReaders())
                self.assertEqual((server.count, proxy.upstream.bytes), (0, 0))
                self.assertGreater(unsent_bytes(client.transport) or 0, 4 << 20)
                proxy.upstream.remove(fault)
                await server.got
        self.assertEqual(server.count, total)

    async def test_at_entry_holds_new_connections(self) -> None:
        """Given to proxied(), stop_reading() holds each connection from its start."""
        servers = CountingFactory(Chunks)
        async with serving(servers) as port:
            async with proxied(port, upstream=[stop_reading()]) as proxy:
                async with connected(proxy) as stream:
                    await servers.made()
                    stream.write(b"held")
                    await turns(10)
                    [server] = servers.built
                    self.assertEqual(server.data, b"")
                    proxy.upstream.clear()
                    self.assertEqual(await server.received(4), b"held")

    async def test_two_stop_readings_removing_one_still_holds(self) -> None:
        """Two stop_reading() faults: with one removed, the other still holds
        the sender."""
        servers = CountingFactory(Chunks)
        async with serving(servers) as port, proxied(port) as proxy:
            async with connected(proxy) as stream:
                await servers.made()
                first, second = stop_reading(), stop_reading()
                proxy.upstream.add(first, second)
                proxy.upstream.remove(first)
                self.assertNotIn(the_link(proxy).down.transport, reactor.getReaders())
                stream.write(b"held")
                await turns(10)
                [server] = servers.built
                self.assertEqual(server.data, b"")
                proxy.upstream.remove(second)
                self.assertEqual(await server.received(4), b"held")


class BlackholeTests(TestCase):
    async def test_blackhole_trips_a_deadline(self) -> None:
        """Nothing comes back through a blackhole: the deadline fires, named."""
        servers = CountingFactory(Chunks)

        @deadline(0.3)
        async def ask(proxy: Proxy) -> bytes:
            async with connected(proxy) as stream:
                stream.write(b"anyone?")
                return await stream.readexactly(7)

        async with serving(servers) as port:
            async with proxied(port, upstream=[blackhole()]) as proxy:
                with self.assertRaises(DeadlineExceeded) as caught:
                    await ask(proxy)
                self.assertEqual(proxy.upstream.bytes, 0)
        self.assertIn("readexactly", str(caught.exception))
        self.assertEqual([server.data for server in servers.built], [b""])

    async def test_blackhole_trips_a_read_timeout(self) -> None:
        """A read with a timeout through a blackhole raises WaitTimeout."""
        async with serving(Factory.forProtocol(PlainEcho)) as port:
            async with proxied(port, downstream=[blackhole()]) as proxy:
                async with connected(proxy) as stream:
                    stream.write(b"echo?")
                    with self.assertRaises(WaitTimeout):
                        await stream.readexactly(5, timeout=0.2)
                self.assertEqual((proxy.upstream.bytes, proxy.downstream.bytes), (5, 0))


class ResetTests(TestCase):
    async def test_reset_after_n_bytes(self) -> None:
        """reset_peer(after=4): the client gets 4 bytes, then ConnectionLost."""
        servers = sending(Sends, b"0123456789")
        async with serving(servers) as port:
            async with proxied(port, downstream=[reset_peer(after=4)]) as proxy:
                client = await outcome_of_connection(proxy)
                [server] = servers.built
                await server.lost
        self.assertEqual(client.data, b"0123")
        self.assertTrue(is_reset(client.reason), client.reason)
        self.assertTrue(is_reset(server.reason), server.reason)
        self.assertEqual(proxy.downstream.bytes, 4)

    async def test_reset_at_once(self) -> None:
        """reset_peer(): a new connection is reset as soon as it is made."""
        async with serving(sending(Sends, b"never seen")) as port:
            async with proxied(port, downstream=[reset_peer()]) as proxy:
                client = await outcome_of_connection(proxy)
        self.assertEqual(client.data, b"")
        self.assertTrue(is_reset(client.reason), client.reason)

    async def test_reset_upstream_at_once(self) -> None:
        """reset_peer() upstream resets each connection once it reaches the server."""
        servers = CountingFactory(Recorder)
        async with serving(servers) as port:
            async with proxied(port, upstream=[reset_peer()]) as proxy:
                client = await outcome_of_connection(proxy)
        self.assertTrue(is_reset(client.reason), client.reason)

    async def test_reset_added_to_an_open_connection(self) -> None:
        """reset_peer() added in the block resets a connection already open."""
        async with serving(Factory.forProtocol(PlainEcho)) as port:
            async with proxied(port) as proxy:
                async with connected(proxy, client_factory()) as client:
                    client.transport.write(b"x")
                    await client.received(1)
                    proxy.downstream.add(reset_peer())
                    await client.lost
        self.assertTrue(is_reset(client.reason), client.reason)

    async def test_reset_waits_for_a_slow_reader_without_polling(self) -> None:
        """reset_peer() while the leg to the client holds unsent bytes: the
        proxy waits for the transport to say they are sent (no timer spins),
        then resets, and the client sees the reset after reading them."""
        ran: list[Pipe] = []
        original = Pipe._run

        def run(pipe: Pipe) -> None:
            ran.append(pipe)
            original(pipe)

        # Only the transport's word can end the wait: RESET_WAIT is far off.
        self.patch(_proxy, "RESET_WAIT", 60)
        with socket.socket() as raw:
            async with serving(flood(4 << 20)) as port:
                async with stuck_behind(self, port, raw, timeout=30) as proxy:
                    self.patch(Pipe, "_run", run)
                    proxy.downstream.add(reset_peer())
                    await turns(20)
                    self.assertEqual(len(ran), 1)  # to see the reset waits
                    self.assertTrue(the_link(proxy).down.transport.connected)
                    client = adopt(raw, paused=False)
                    await client.lost
        self.assertTrue(is_reset(client.reason), client.reason)
        # What the proxy's socket still held when it reset is lost, as a
        # reset loses it: the client read up to what the proxy sent.
        self.assertTrue(0 < client.count <= proxy.downstream.bytes)

    async def test_reset_waits_for_a_few_unsent_bytes(self) -> None:
        """reset_peer() while the leg to the client holds a few unsent bytes,
        too few for its transport to pause anything: the proxy still waits
        for the transport to say they are sent, then resets."""
        # Only the transport's word can end the wait: RESET_WAIT is far off.
        self.patch(_proxy, "RESET_WAIT", 60)
        total = 48 << 10
        with socket.socket() as raw:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            async with serving(flood(total)) as port:
                downstream = [stop_reading()]
                async with proxied(port, downstream=downstream, timeout=30) as proxy:
                    raw.connect(("127.0.0.1", proxy.getHost().port))
                    await port.factory.made
                    down = the_link(proxy).down.transport
                    down.getHandle().setsockopt(
                        socket.SOL_SOCKET, socket.SO_SNDBUF, 4096
                    )
                    delivered = when_delivered(self, proxy.downstream, total)
                    proxy.downstream.clear()
                    await delivered
                    self.assertGreater(unsent_bytes(down) or 0, 0)
                    self.assertFalse(down.producerPaused)
                    proxy.downstream.add(reset_peer())
                    client = adopt(raw, paused=False)
                    await client.lost
        self.assertTrue(is_reset(client.reason), client.reason)
        self.assertTrue(0 < client.count <= total)

    async def test_first_fault_to_end_decides_how(self) -> None:
        """reset_peer(after=2) then limit_data(2) end the direction at the
        same byte: the first one's reset is what the client sees."""
        servers = sending(Sends, b"0123456789")
        async with serving(servers) as port:
            faults = [reset_peer(after=2), limit_data(2)]
            async with proxied(port, downstream=faults) as proxy:
                client = await outcome_of_connection(proxy)
        self.assertEqual(client.data, b"01")
        self.assertTrue(is_reset(client.reason), client.reason)

    async def test_reset_of_a_receiver_that_never_reads(self) -> None:
        """reset_peer() reaches a client that never reads, within RESET_WAIT
        (what the proxy could not send is dropped, as a reset drops it)."""
        with socket.socket() as raw:
            async with serving(flood(4 << 20)) as port:
                async with stuck_behind(self, port, raw, timeout=30) as proxy:
                    leg = the_link(proxy).down
                    started = now()
                    proxy.downstream.add(reset_peer())
                    await lost(leg)
                    self.assertLess(now() - started, RESET_WAIT + 5)

    async def test_reset_added_drops_what_latency_holds(self) -> None:
        """reset_peer() added while latency holds bytes resets at once, not
        after them."""
        async with serving(Factory.forProtocol(PlainEcho)) as port:
            async with proxied(port, downstream=[latency(30)]) as proxy:
                async with connected(proxy, client_factory()) as client:
                    client.transport.write(b"held")
                    await when_queued(proxy.downstream)
                    started = now()
                    proxy.downstream.add(reset_peer())
                    # What latency held is dropped at once.
                    self.assertEqual(
                        repr(the_link(proxy).downstream),
                        "<cleanconn proxy pipe downstream: 0 bytes queued>",
                    )
                    await client.lost
                    self.assertLess(now() - started, 10)
        self.assertEqual(client.data, b"")
        self.assertTrue(is_reset(client.reason), client.reason)

    async def test_reset_added_after_a_half_close(self) -> None:
        """reset_peer() added to a direction whose sender closed its side
        resets the connection all the same: the client sees the reset. (The
        server, half-closed, does not read: it sees it only when it writes,
        or when its scope closes it.)"""
        servers = CountingFactory(HalfCloseable)
        async with serving(servers) as port:
            async with proxied(port) as proxy:
                async with connected(proxy, CountingFactory(HalfCloseable)) as client:
                    await servers.made()
                    [server] = servers.built
                    client.transport.loseWriteConnection()
                    await server.read_lost
                    proxy.upstream.add(reset_peer())
                    await client.lost
        self.assertTrue(is_reset(client.reason), client.reason)

    async def test_client_reset_after_a_half_close_reaches_the_server(self) -> None:
        """A client that half-closes, then resets: the server is reset too."""
        servers = CountingFactory(HalfCloseable)
        async with serving(servers) as port:
            async with proxied(port) as proxy:
                async with connected(proxy, CountingFactory(HalfCloseable)) as client:
                    await servers.made()
                    [server] = servers.built
                    link = the_link(proxy)
                    client.transport.loseWriteConnection()
                    await server.read_lost
                    client.transport.abortConnection()
                    await client.lost
                    # Twisted no longer reads the proxy's leg to the client,
                    # half-closed: the proxy sees the reset when it writes there.
                    server.transport.write(b"to the client")
                    await lost(link.down)
                    await lost(link.up)
                    # Nor the server's side: it sees the reset when it writes.
                    # (Had the proxy closed its leg cleanly, this write would
                    # succeed, and the server would not be lost.)
                    server.transport.write(b"again")
                    await server.lost
        self.assertTrue(is_reset(server.reason), server.reason)

    async def test_client_reset_after_a_half_close_follows_held_bytes(self) -> None:
        """A client that writes, half-closes, then resets while latency holds
        its bytes: the server gets them, then the reset (not the close)."""
        servers = CountingFactory(HalfCloseable)
        async with serving(servers) as port:
            async with proxied(port, upstream=[latency(1)]) as proxy:
                async with connected(proxy, CountingFactory(HalfCloseable)) as client:
                    await servers.made()
                    [server] = servers.built
                    link = the_link(proxy)
                    first = when_queued(proxy.upstream, 2)
                    client.transport.write(b"he")
                    await first  # two pieces held, then the close
                    queued = when_queued(proxy.upstream, 4)
                    client.transport.write(b"ld")
                    client.transport.loseWriteConnection()
                    await queued
                    client.transport.abortConnection()
                    await client.lost
                    server.transport.write(b"to the client")
                    await lost(link.down)
                    # The proxy saw the reset while latency still held the
                    # bytes and the close.
                    self.assertEqual(
                        repr(link.upstream),
                        "<cleanconn proxy pipe upstream: 4 bytes queued>",
                    )
                    await server.lost
        self.assertEqual(server.data, b"held")
        self.assertFalse(server.read_lost.called)
        self.assertTrue(is_reset(server.reason), server.reason)

    async def test_server_reset_reaches_the_client(self) -> None:
        """A server that resets: the client sees a reset too, after its data."""
        async with serving(sending(SendsThenAborts, b"last words")) as port:
            async with proxied(port) as proxy:
                async with connected(proxy, CountingFactory(Acks)) as client:
                    await client.lost
        self.assertEqual(client.data, b"last words")
        self.assertTrue(is_reset(client.reason), client.reason)


class LimitDataTests(TestCase):
    async def test_limit_then_clean_close(self) -> None:
        """limit_data(4): the client gets 4 bytes, then a clean close."""
        proxy = await self.assert_limited_to_4(b"0123456789")
        self.assertEqual(proxy.downstream.bytes, 4)

    async def assert_limited_to_4(self, payload: bytes) -> Proxy:
        """A server sends ``payload`` through ``limit_data(4)``: check that
        the client gets its first 4 bytes, then a clean close."""
        async with serving(sending(Sends, payload)) as port:
            async with proxied(port, downstream=[limit_data(4)]) as proxy:
                client = await outcome_of_connection(proxy)
        self.assertEqual(client.data, payload[:4])
        assert client.reason is not None
        self.assertIsNotNone(client.reason.check(ConnectionDone))
        return proxy

    async def test_limit_upstream_across_writes(self) -> None:
        """limit_data(5) upstream counts across writes: the server gets 5 bytes
        (the one byte left of the limit, of the second write)."""
        servers = CountingFactory(Chunks)
        async with serving(servers) as port:
            async with proxied(port, upstream=[limit_data(5)]) as proxy:
                async with connected(proxy, client_factory()) as client:
                    await servers.made()
                    client.transport.write(b"abcd")
                    [server] = servers.built
                    await server.received(4)
                    client.transport.write(b"efgh")
                    await client.lost
                    await server.lost
        self.assertEqual(server.data, b"abcde")
        assert client.reason is not None
        self.assertIsNotNone(client.reason.check(ConnectionDone))

    async def test_limit_before_a_blackhole_still_closes(self) -> None:
        """limit_data(2) then blackhole() upstream: the blackhole drops the
        bytes, but the close the limit asked for comes through."""
        servers = CountingFactory(Recorder)
        async with serving(servers) as port:
            faults = [limit_data(2), blackhole()]
            async with proxied(port, upstream=faults) as proxy:
                async with connected(proxy, client_factory()) as client:
                    await servers.made()
                    client.transport.write(b"abc")
                    await client.lost
                    [server] = servers.built
                    await server.lost
        self.assertEqual((server.data, proxy.upstream.bytes), (b"", 0))
        assert client.reason is not None
        self.assertIsNotNone(client.reason.check(ConnectionDone))

    async def test_limit_keeps_what_waits_for_the_server(self) -> None:
        """limit_data(5) reached while the proxy still connects to the server:
        the bytes before the limit still go through, then the close."""
        servers = CountingFactory(Recorder)
        async with serving(servers) as port:
            endpoint = ConnectsWhenTold(port)
            async with proxied(endpoint, upstream=[limit_data(5)]) as proxy:
                async with connected(proxy, client_factory()) as client:
                    queued = when_queued(proxy.upstream)
                    client.transport.write(b"abcd")
                    await queued
                    queued = when_queued(proxy.upstream)
                    client.transport.write(b"efgh")
                    await queued
                    await endpoint.go()
                    await client.lost
                    [server] = servers.built
                    await server.lost
        self.assertEqual(server.data, b"abcde")

    async def test_limit_reached_exactly_closes(self) -> None:
        """limit_data(4) and a server that sends exactly 4 bytes: the client
        gets them, then a clean close."""
        await self.assert_limited_to_4(b"0123")

    async def test_limit_closes_both_legs(self) -> None:
        """limit_data() closes the connection, not just one direction: the
        server side is closed too, while the client only read the end."""
        servers = sending(Sends, b"0123456789")
        async with serving(servers) as port:
            async with proxied(port, downstream=[limit_data(4)]) as proxy:
                async with connected(proxy, CountingFactory(HalfCloseable)) as client:
                    await client.read_lost
                    [server] = servers.built
                    await server.lost
                    self.assertEqual(client.data, b"0123")


class SlowCloseTests(TestCase):
    async def test_slow_close_delays_the_close(self) -> None:
        """slow_close(0.3): the client sees the server's close 0.3 s later at least."""
        servers = sending(SendsThenCloses, b"bye")
        async with serving(servers) as port:
            async with proxied(port, downstream=[slow_close(0.3)]) as proxy:
                client = await outcome_of_connection(proxy)
                ended = now()
        [server] = servers.built
        self.assertEqual(client.data, b"bye")
        self.assertGreaterEqual(ended - server.closed_at, 0.3)
        assert client.reason is not None
        self.assertIsNotNone(client.reason.check(ConnectionDone))

    async def test_slow_close_delays_a_limit(self) -> None:
        """limit_data(4) then slow_close(0.3): the close the limit asks for
        comes 0.3 s after the bytes at least."""
        servers = sending(Sends, b"0123456789")
        async with serving(servers) as port:
            faults = [limit_data(4), slow_close(0.3)]
            async with proxied(port, downstream=faults) as proxy:
                started = now()  # before the server sends
                client = await outcome_of_connection(proxy)
                ended = now()
        self.assertEqual(client.data, b"0123")
        self.assertGreaterEqual(ended - started, 0.3)
        assert client.reason is not None
        self.assertIsNotNone(client.reason.check(ConnectionDone))


class ChangingFaultsTests(TestCase):
    async def test_fault_added_twice_removed_once_still_acts(self) -> None:
        """stop_reading() added twice and removed once still holds the sender."""
        servers = CountingFactory(Chunks)
        async with serving(servers) as port, proxied(port) as proxy:
            fault = stop_reading()
            async with connected(proxy) as stream:
                await servers.made()
                proxy.upstream.add(fault, fault)
                proxy.upstream.remove(fault)
                link = the_link(proxy)
                self.assertTrue(link.upstream._holds)
                proxy.upstream.remove(fault)
                self.assertFalse(link.upstream._holds)
                stream.write(b"x")
                [server] = servers.built
                await server.received(1)

    async def test_added_and_removed_on_an_open_connection(self) -> None:
        """A slicer added in the block cuts the next write; removed, it does not."""
        servers = CountingFactory(LineAnswer)
        async with serving(servers) as port, proxied(port) as proxy:
            async with connected(proxy) as stream:
                await servers.made()
                [server] = servers.built
                stream.write(b"one\n")
                await stream.readline()
                fault = slicer(1)
                proxy.upstream.add(fault)
                stream.write(b"two\n")
                await stream.readline()
                proxy.upstream.remove(fault)
                self.assertEqual(proxy.upstream.faults, [])
                stream.write(b"three\n")
                await stream.readline()
        self.assertEqual(server.chunks, [b"one\n", b"t", b"w", b"o", b"\n", b"three\n"])

    async def test_latency_added_in_the_block(self) -> None:
        """latency() added to an open connection delays what comes after."""
        async with serving(Factory.forProtocol(PlainEcho)) as port:
            async with proxied(port) as proxy, connected(proxy) as stream:
                stream.write(b"a")
                await stream.readexactly(1)
                proxy.add(latency(0.15))
                started = now()
                stream.write(b"b")
                await stream.readexactly(1)
                self.assertGreaterEqual(now() - started, 0.3)
                proxy.clear()
                self.assertEqual(
                    (proxy.upstream.faults, proxy.downstream.faults), ([], [])
                )

    async def test_upstream_faults_leave_downstream_alone(self) -> None:
        """upstream=[slicer(1)] cuts what the server gets, not what it answers."""
        servers = CountingFactory(LineAnswer)
        async with serving(servers) as port:
            async with proxied(port, upstream=[slicer(1)]) as proxy:
                async with connected(proxy, CountingFactory(Chunks)) as client:
                    await servers.made()
                    client.transport.write(b"hi\n")
                    await client.received(len(LineAnswer.ANSWER))
        [server] = servers.built
        self.assertEqual(server.chunks, [b"h", b"i", b"\n"])
        self.assertEqual(client.chunks, [LineAnswer.ANSWER])

    async def test_downstream_faults_leave_upstream_alone(self) -> None:
        """downstream=[slicer(4)] cuts the answer, not the request."""
        servers = CountingFactory(LineAnswer)
        async with serving(servers) as port:
            async with proxied(port, downstream=[slicer(4)]) as proxy:
                async with connected(proxy, CountingFactory(Chunks)) as client:
                    await servers.made()
                    client.transport.write(b"hi\n")
                    await client.received(len(LineAnswer.ANSWER))
        [server] = servers.built
        self.assertEqual(server.chunks, [b"hi\n"])
        answer = LineAnswer.ANSWER
        self.assertEqual(client.chunks, [answer[i : i + 4] for i in range(0, 17, 4)])


# down() and up() -----------------------------------------------------------------


class DownUpTests(TestCase):
    async def test_down_refuses_new_connections_open_ones_go_on(self) -> None:
        """down(): new connections are refused; one already open still works;
        up() accepts again on the same port."""
        async with serving(Factory.forProtocol(PlainEcho)) as port:
            async with proxied(port) as proxy:
                number = proxy.getHost().port
                async with connected(proxy) as before:
                    await proxy.down()
                    self.assertTrue(proxy.is_down)
                    with self.assertRaises(ConnectionRefusedError):
                        async with connected(proxy):
                            self.fail("connected while down")
                    before.write(b"still here")
                    self.assertEqual(await before.readexactly(10), b"still here")
                    await proxy.up()
                    self.assertEqual(proxy.getHost().port, number)
                    async with connected(proxy) as after:
                        after.write(b"back")
                        self.assertEqual(await after.readexactly(4), b"back")
                self.assertEqual(proxy.connections, 2)

    async def test_up_after_the_exit(self) -> None:
        """up() and down() after the scope ended raise ScopeClosed."""
        async with serving(Factory.forProtocol(PlainEcho)) as port:
            async with proxied(port) as proxy:
                await proxy.down()
        for call, name in ((proxy.up, "proxy.up()"), (proxy.down, "proxy.down()")):
            with self.assertRaises(ScopeClosed) as caught:
                await call()
            self.assertEqual(
                (caught.exception.scope, caught.exception.action), ("proxied()", name)
            )
            self.assertEqual(
                str(caught.exception),
                f"{name}: its proxied() scope has ended, or is ending, so there "
                f"is nothing more to {name[:-2]}. Call it inside the async with "
                "block, and await it there.",
            )

    async def test_up_right_after_down(self) -> None:
        """up() just after a down() nobody awaited waits for its stop first."""
        async with serving(Factory.forProtocol(PlainEcho)) as port:
            async with clean_reactor(), proxied(port) as proxy:
                down = defer.ensureDeferred(proxy.down())
                await proxy.up()
                await down
                async with connected(proxy) as stream:
                    stream.write(b"up")
                    self.assertEqual(await stream.readexactly(2), b"up")

    async def test_up_listens_on_loopback_only_again(self) -> None:
        """After down() and up(), the proxy is up, on 127.0.0.1 only, as before."""
        async with serving(Factory.forProtocol(PlainEcho)) as port:
            async with proxied(port) as proxy:
                number = proxy.getHost().port
                await proxy.down()
                await proxy.up()
                self.assertIs(proxy.is_down, False)
                # Another loopback address reaches a port bound to all of them.
                other = TCP4ClientEndpoint(reactor, "127.0.0.2", number)
                with self.assertRaises(ConnectionRefusedError):
                    await other.connect(client_factory())
                async with connected(proxy) as stream:
                    stream.write(b"again")
                    self.assertEqual(await stream.readexactly(5), b"again")

    async def test_up_keeps_the_large_backlog(self) -> None:
        """After up(), 200 clients that connect before any accept all get in:
        the backlog is serving()'s, not Twisted's 50."""
        target = NeverConnects()  # accepted clients wait: nothing to serve
        async with clean_reactor(), proxied(target) as proxy:
            await proxy.down()
            await proxy.up()
            address = ("127.0.0.1", proxy.getHost().port)
            with contextlib.ExitStack() as stack:
                # The reactor cannot accept while this loop runs: with a
                # backlog of 50 the 52nd connect would time out.
                for _ in range(200):
                    raw = socket.create_connection(address, timeout=10)
                    stack.callback(raw.close)

    async def test_exit_while_up_waits_for_the_stop(self) -> None:
        """up() waiting for a down() not awaited raises ScopeClosed if the
        exit begins meanwhile, and does not listen again."""
        async with serving(Factory.forProtocol(PlainEcho)) as port:
            async with clean_reactor():
                async with proxied(port) as proxy:
                    down = defer.ensureDeferred(proxy.down())
                    up = defer.ensureDeferred(proxy.up())
                with self.assertRaises(ScopeClosed) as caught:
                    await up
                await down
        self.assertEqual(caught.exception.action, "proxy.up()")
        self.assertIs(proxy.is_down, True)

    async def test_exit_while_down(self) -> None:
        """A proxy left down (twice) exits cleanly; up() when up does nothing."""
        async with serving(Factory.forProtocol(PlainEcho)) as port:
            async with clean_reactor(), proxied(port) as proxy:
                await proxy.up()
                await proxy.down()
                await proxy.down()


# The exit ------------------------------------------------------------------------


@implementer(IStreamClientEndpoint)
class ConnectsWhenTold:
    """An endpoint whose connect cannot be cancelled: it connects (really)
    only when the test calls :meth:`go`."""

    def __init__(self, port: Any) -> None:
        self._port = port
        self._pending: list[tuple[Any, defer.Deferred[Any]]] = []

    def connect(self, factory: Any) -> defer.Deferred[Any]:
        done: defer.Deferred[Any] = defer.Deferred()
        self._pending.append((factory, done))
        return done

    def go(self) -> defer.Deferred[Any]:
        """Connect now (the proxy's own Deferred was cancelled meanwhile)."""
        factory, _ = self._pending.pop()
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self._port.getHost().port)
        return endpoint.connect(factory)


class ExitTests(TestCase):
    async def test_connect_that_completes_after_the_exit(self) -> None:
        """A leg whose connect completed after the exit (an endpoint that
        cannot cancel) is closed at once: nothing of it is left."""
        servers = CountingFactory(Recorder)
        async with serving(servers) as port:
            endpoint = ConnectsWhenTold(port)
            async with clean_reactor():
                async with proxied(endpoint) as proxy:
                    async with connected(proxy):
                        pass
                await endpoint.go()
                await servers.made()
                [server] = servers.built
                await server.lost  # the proxy closed its leg at once
        self.assertTrue(is_reset(server.reason), server.reason)

    async def test_exit_closes_both_legs_and_the_server_side(self) -> None:
        """At the exit, both legs close; the client and server saw connectionLost."""
        servers = CountingFactory(Recorder)
        sets = len(_live)
        async with serving(servers) as port:
            async with clean_reactor(), proxied(port) as proxy:
                client = await raw_client(proxy)
                client.transport.write(b"hi")
                await servers.made()
                [server] = servers.built
                await server.received(2)
            self.assertEqual((client.lost_count, server.lost_count), (1, 1))
            self.assertEqual(proxy._links, {})
            self.assertEqual(len(_live), sets + 1)  # serving()'s own
        self.assertEqual(len(_live), sets)

    async def test_server_side_forgotten_once_lost(self) -> None:
        """The server side of a connection that ended in the block is not
        kept for the exit to close."""
        async with serving(Factory.forProtocol(PlainEcho)) as port:
            async with proxied(port) as proxy:
                async with connected(proxy) as stream:
                    stream.write(b"x")
                    await stream.readexactly(1)
                [peer] = proxy._peers
                await lost(peer.wrapped)
                self.assertEqual(proxy._peers, {})

    async def test_exit_drops_what_latency_holds(self) -> None:
        """Bytes held by latency(10) are dropped at the exit, which does not wait."""
        servers = CountingFactory(Recorder)
        async with serving(servers) as port:
            started = now()
            async with clean_reactor(), proxied(port, upstream=[latency(10)]) as proxy:
                client = await raw_client(proxy)
                await servers.made()
                client.transport.write(b"late")
                await turns(5)
            self.assertLess(now() - started, 5)
            self.assertEqual(servers.built[0].data, b"")
            self.assertEqual((client.lost_count, servers.built[0].lost_count), (1, 1))

    async def test_exit_with_stop_reading(self) -> None:
        """A connection held by stop_reading() is closed at the exit all the same."""
        servers = CountingFactory(Recorder)
        async with serving(servers) as port:
            async with clean_reactor(), proxied(port) as proxy:
                client = await raw_client(proxy)
                await servers.made()
                proxy.add(stop_reading())
                client.transport.write(b"held")
                servers.built[0].transport.write(b"held too")
                await turns(5)
            self.assertEqual((client.lost_count, servers.built[0].lost_count), (1, 1))

    async def test_exit_cancels_a_pending_connect(self) -> None:
        """A connection whose server side is still being connected: the connect
        is cancelled, the client's side closed, and no failure is recorded."""
        target = NeverConnects()
        async with clean_reactor(), proxied(target) as proxy:
            client = await raw_client(proxy)
            await target.asked
        self.assertEqual(client.lost_count, 1)
        self.assertTrue(target.cancelled)
        self.assertEqual(proxy.failures, [])

    async def test_client_reset_cancels_a_pending_connect(self) -> None:
        """A client that resets while the proxy connects cancels that connect."""
        target = NeverConnects()
        async with clean_reactor(), proxied(target) as proxy:
            client = await raw_client(proxy)
            await target.asked
            leg = the_link(proxy).down
            client.transport.abortConnection()
            await lost(leg)
            self.assertTrue(target.cancelled)
            self.assertEqual(proxy._links, {})
        self.assertEqual(proxy.failures, [])

    async def test_exit_timeout_when_a_leg_cannot_close(self) -> None:
        """A client that never reads: the proxy's leg to it cannot flush, so
        the exit aborts it after timeout and raises CleanupTimeout."""
        with socket.socket() as raw:
            async with serving(flood(4 << 20)) as port:
                with self.assertRaises(CleanupTimeout) as caught:
                    async with clean_reactor():
                        async with stuck_behind(self, port, raw, timeout=0.5):
                            pass
        error = caught.exception
        self.assertEqual(error.scope, "proxied()")
        self.assertEqual(len(error.aborted), 1)
        self.assertGreater(error.aborted[0].unsent or 0, 0)
        self.assertEqual(error.unclosed, ())

    async def test_exit_closes_a_leg_its_valve_paused(self) -> None:
        """A leg the proxy stopped feeding (its peer was slow) closes as soon as
        the peer reads what is left: gracefully, within the exit."""
        with socket.socket() as raw:
            async with serving(flood(4 << 20)) as port:
                scope = stuck_behind(self, port, raw, timeout=30)
                proxy = await scope.__aenter__()
                self.assertTrue(the_link(proxy).down.transport.producerPaused)
                client = adopt(raw, paused=True)
                started = now()
                exiting = defer.ensureDeferred(scope.__aexit__(None, None, None))
                client.resume()  # the client reads at last
                await exiting
                self.assertLess(now() - started, 30)
        await client.lost
        self.assertEqual(client.count, proxy.downstream.bytes)
        self.assertIsNotNone(client.reason.check(ConnectionDone))

    async def test_cancelled_exit(self) -> None:
        """A deadline that passes during the exit aborts what is left at once."""
        exiting: list[float] = []

        @deadline(2, grace=2)
        async def body(raw: socket.socket) -> None:
            async with serving(flood(4 << 20)) as port:
                async with stuck_behind(self, port, raw, timeout=60):
                    exiting.append(now())

        with socket.socket() as raw:
            async with clean_reactor():
                with self.assertRaises(DeadlineExceeded) as caught:
                    await body(raw)
        self.assertEqual(len(exiting), 1)  # the exit was under way, not the setup
        self.assertLess(now() - exiting[0], 30)
        error = caught.exception
        assert error.waiting is not None
        self.assertEqual(error.waiting.function, "stuck_behind")
        self.assertIn("async with proxied(", str(error))
        self.assertFalse(error.abandoned)

    async def test_body_exception_wins_with_the_seed(self) -> None:
        """The body's exception goes on, with a note naming the proxy's seed."""
        async with serving(Factory.forProtocol(PlainEcho)) as port:
            with self.assertRaises(KeyError) as caught:
                async with proxied(port, faults=[slicer(2)], seed=99) as proxy:
                    async with connected(proxy) as stream:
                        stream.write(b"x")
                        raise KeyError("the body's")
        error = caught.exception
        self.assertEqual(error.args, ("the body's",))
        if sys.version_info < (3, 11):
            raise SkipTest("this Python has no exception notes (3.11+)")
        notes = getattr(error, "__notes__", [])
        self.assertIn(
            f"cleanconn: <cleanconn proxy to 127.0.0.1:{port.getHost().port}, "
            "upstream: slicer(2); downstream: slicer(2), seed=99> was in the way; "
            "pass seed=99 to proxied() to repeat its random faults",
            notes,
        )

    async def test_target_that_cannot_be_shown(self) -> None:
        """A target endpoint whose repr raises: the body's exception goes on,
        and the proxy's exit still closes its port and connections."""
        await self.raise_through_a_proxy(
            KeyError("the body's"),
            lambda port: _ReprRaisesEndpoint(reactor, "127.0.0.1", port.getHost().port),
        )

    async def test_body_exception_that_takes_no_notes(self) -> None:
        """A body exception that refuses notes goes on as it is, and the
        proxy's exit still closes everything."""
        await self.raise_through_a_proxy(_Frozen("boom"), lambda port: port)

    async def raise_through_a_proxy(
        self, boom: BaseException, target: Callable[[ServingPort[Any]], object]
    ) -> None:
        """Raise ``boom`` in a block that echoed through ``proxied()`` to
        ``target(port)``; check that it goes on as it is, and that nothing
        is left open (clean_reactor() checks the reactor)."""
        factory = CountingFactory(PlainEchoRecorder)
        async with clean_reactor(), serving(factory) as port:
            with self.assertRaises(type(boom)) as caught:
                async with proxied(target(port)) as proxy, connected(proxy) as stream:
                    stream.write(b"x")
                    await stream.readexactly(1)
                    raise boom
        self.assertIs(caught.exception, boom)
        self.assertEqual({p.lost_count for p in factory.built}, {1})


class _ReprRaisesEndpoint(TCP4ClientEndpoint):
    """A user's endpoint that cannot be shown: its repr raises."""

    def __repr__(self) -> str:
        raise RuntimeError("repr broken")


class _EndpointWithHost(TCP4ClientEndpoint):
    """An endpoint that also has a getHost(), naming where nothing listens."""

    def getHost(self) -> IPv4Address:
        return IPv4Address("TCP", "127.0.0.1", 1)


class _False(Exception):
    """An exception that is false."""

    def __bool__(self) -> bool:
        return False


@implementer(IStreamClientEndpoint)
class FailsWith:
    """An endpoint whose connects fail at once with ``error``."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def connect(self, factory: Any) -> defer.Deferred[Any]:
        return defer.fail(self.error)


@implementer(IStreamClientEndpoint)
class _NotHalfCloseable:
    """Connects to ``port`` with each protocol inside a ProtocolWrapper,
    which is not half-closeable: the server's close is its connectionLost."""

    def __init__(self, port: Any) -> None:
        self._port = port

    def connect(self, factory: Any) -> defer.Deferred[Any]:
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self._port.getHost().port)
        return endpoint.connect(WrappingFactory(factory))


# Targets -------------------------------------------------------------------------


async def echo_through(test: TestCase, target: object, message: bytes) -> Proxy:
    async with proxied(target) as proxy, connected(proxy) as stream:
        stream.write(message)
        test.assertEqual(await stream.readexactly(len(message)), message)
    return proxy


class TargetTests(TestCase):
    async def test_stopped_port_is_refused(self) -> None:
        """A serving() port that stopped listening: the client's connection
        closes, and failures say why."""
        async with serving(Factory.forProtocol(PlainEcho)) as port:
            await port.stopListening()
            async with clean_reactor(), proxied(port) as proxy:
                async with connected(proxy) as stream:
                    self.assertEqual(await stream.read(), b"")
                [failure] = proxy.failures
                self.assertIsInstance(failure, ConnectionRefusedError)

    async def test_unix_port(self) -> None:
        """A UNIX serving() port is proxied (the proxy listens on TCP)."""
        servers = CountingFactory(PlainEchoRecorder)
        async with serving(servers, unix=True) as port:
            await echo_through(self, port, b"unix")
            self.assertEqual([s.lost_count for s in servers.built], [1])

    async def test_endpoint_string(self) -> None:
        """A client endpoint string is proxied."""
        async with serving(Factory.forProtocol(PlainEcho)) as port:
            target = f"tcp:127.0.0.1:{port.getHost().port}"
            proxy = await echo_through(self, target, b"str")
        self.assertEqual(
            repr(proxy), f"<cleanconn proxy to {target}, no faults, seed={proxy.seed}>"
        )

    async def test_endpoint(self) -> None:
        """An IStreamClientEndpoint is proxied."""
        async with serving(Factory.forProtocol(PlainEcho)) as port:
            endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
            proxy = await echo_through(self, endpoint, b"endpoint")
        self.assertEqual(
            repr(proxy),
            f"<cleanconn proxy to {endpoint!r}, no faults, seed={proxy.seed}>",
        )

    async def test_endpoint_with_get_host(self) -> None:
        """An IStreamClientEndpoint that also has getHost() is connected
        through, not taken for a port to connect to."""
        async with serving(Factory.forProtocol(PlainEcho)) as port:
            endpoint = _EndpointWithHost(reactor, "127.0.0.1", port.getHost().port)
            await echo_through(self, endpoint, b"endpoint")

    async def test_another_proxy(self) -> None:
        """A proxy is a target too: two proxies in a row."""
        async with serving(Factory.forProtocol(PlainEcho)) as port:
            async with proxied(port, faults=[slicer(2)]) as inner:
                outer = await echo_through(self, inner, b"twice")
                self.assertEqual(outer.upstream.bytes, 5)
                # The outer exit closed the inner's side of the connection,
                # and waited for it, as for a serving() port's server side.
                self.assertTrue(the_link(inner).down.lost)

    async def test_ipv6_port(self) -> None:
        """A port on ::1 is proxied."""
        if not has_ipv6():
            raise SkipTest("no IPv6 loopback here")
        async with serving(Factory.forProtocol(PlainEcho), interface="::1") as port:
            await echo_through(self, port, b"six")

    async def test_tls_passes_through(self) -> None:
        """TLS passes through the proxy; connected() verifies the target's CA."""
        servers = CountingFactory(PlainEchoRecorder)
        async with serving(servers, tls=True) as port:
            async with proxied(port) as proxy:
                self.assertIs(proxy.tls, port.tls)
                async with connected(proxy) as stream:
                    stream.write(b"secret")
                    self.assertEqual(await stream.readexactly(6), b"secret")
                    cert = stream.transport.getPeerCertificate()
                    self.assertIsNotNone(cert)
                # The proxy saw only ciphertext.
                self.assertGreater(proxy.upstream.bytes, 6)
        self.assertEqual(servers.built[0].data, b"secret")

    async def test_tls_other_ca_is_refused(self) -> None:
        """Through the proxy, a client trusting another CA fails verification."""
        other = ThrowawayCA().client_options("127.0.0.1")
        async with serving(Factory.forProtocol(PlainEcho), tls=True) as port:
            async with proxied(port) as proxy:
                with self.assertRaises(Exception) as caught:
                    async with connected(proxy, tls=other):
                        self.fail("the body ran")
        self.assertIn("certificate verify failed", str(caught.exception))

    async def test_http_through_the_proxy(self) -> None:
        """http_client(proxy) and base_url(proxy) reach a twisted.web Site."""
        async with serving(Site(Hello())) as port, proxied(port) as proxy:
            url = base_url(proxy)
            self.assertEqual(url, f"http://127.0.0.1:{proxy.getHost().port}/")
            async with http_client(proxy) as client:
                response = await client.get(url + "hello")
                self.assertEqual(await response.content(), b"hello")
            self.assertEqual(proxy.connections, 1)

    async def test_https_through_the_proxy(self) -> None:
        """https through the proxy is verified against the target's CA."""
        async with serving(Site(Hello()), tls=True) as port:
            async with proxied(port, faults=[slicer(7)]) as proxy:
                url = base_url(proxy)
                self.assertTrue(url.startswith("https://127.0.0.1:"))
                async with http_client(proxy) as client:
                    response = await client.get(url + "hello")
                    self.assertEqual(await response.content(), b"hello")

    async def test_target_that_is_not_half_closeable(self) -> None:
        """A target whose connections see the server's close as connectionLost:
        the client gets what the server sent, then the proxy closes its leg."""
        servers = sending(SendsThenCloses, b"bye")
        async with serving(servers) as port:
            async with proxied(_NotHalfCloseable(port)) as proxy:
                async with connected(proxy, CountingFactory(HalfCloseable)) as client:
                    link = the_link(proxy)
                    await client.read_lost
                    await lost(link.down)
                    self.assertEqual(proxy._links, {})
        self.assertEqual(client.data, b"bye")

    async def test_failure_that_is_false(self) -> None:
        """A connect that fails with an exception that is false: failures
        still records it, in an Exception around its Failure."""
        error = _False("no")
        async with clean_reactor(), proxied(FailsWith(error)) as proxy:
            async with connected(proxy) as stream:
                self.assertEqual(await stream.read(), b"")
            [failure] = proxy.failures
            self.assertIs(failure.args[0].value, error)

    async def test_refused_target(self) -> None:
        """Nothing listening: the client's connection closes, failures say why."""
        with socket.socket() as bound:  # bound, never listening: refuses
            bound.bind(("127.0.0.1", 0))
            target = f"tcp:127.0.0.1:{bound.getsockname()[1]}"
            async with clean_reactor(), proxied(target) as proxy:
                async with connected(proxy) as stream:
                    self.assertEqual(await stream.read(), b"")
                self.assertEqual(len(proxy.failures), 1)
                self.assertIsInstance(proxy.failures[0], ConnectionRefusedError)


# sweep_fragmentation() --------------------------------------------------------------


async def ping(proxy: Proxy) -> None:
    async with connected(proxy) as stream:
        stream.write(REQUEST)
        reply = await stream.readline()
        if reply != b"PONG\r\n":
            raise AssertionError(f"expected PONG, got {reply!r}")


class SweepTests(TestCase):
    async def test_naive_protocol_fails_named(self) -> None:
        """A naive protocol fails every chunking but whole, each named."""
        async with serving(Factory.forProtocol(NaivePing)) as port:
            with self.assertRaises(FragmentationFailed) as caught:
                await sweep_fragmentation(port, ping, seed=5)
        error = caught.exception
        failed = [name for name, _ in error.failures]
        self.assertEqual(failed, ["1 byte", "2 bytes", "3 bytes", "1 to 15 bytes"])
        self.assertEqual(
            error.chunkings, ("whole", "1 byte", "2 bytes", "3 bytes", "1 to 15 bytes")
        )
        self.assertIn("passed: whole", str(error))
        self.assertIn("seed=5", str(error))
        self.assertIn("one dataReceived() is one message", str(error))
        self.assertIs(error.__cause__, error.failures[0][1])

    async def test_line_receiver_passes_all(self) -> None:
        """A LineReceiver passes every chunking; the body ran once per chunking."""
        runs: list[Proxy] = []

        async def body(proxy: Proxy) -> None:
            runs.append(proxy)
            await ping(proxy)

        async with serving(Factory.forProtocol(LinePing)) as port:
            await sweep_fragmentation(port, body)
        self.assertEqual(len(runs), 5)
        self.assertEqual(len({proxy.seed for proxy in runs}), 1)

    async def test_seed_reported_and_reproducible(self) -> None:
        """The seed the error reports repeats the same random cuts; another does not."""
        servers = CountingFactory(Chunks)
        chunkings = [("random", [slicer(8, variation=7)])]

        async def cuts(port: Any, seed: int | None) -> tuple[int, list[int]]:
            before = len(servers.built)

            async def body(proxy: Proxy) -> None:
                async with connected(proxy) as stream:
                    stream.write(bytes(200))
                    await servers.made(before + 1)
                    await servers.built[before].received(200)
                raise AssertionError("fails, to be reported")

            with self.assertRaises(FragmentationFailed) as caught:
                await sweep_fragmentation(port, body, chunkings=chunkings, seed=seed)
            sizes = [len(chunk) for chunk in servers.built[before].chunks]
            return caught.exception.seed, sizes

        async with serving(servers) as port:
            seed, first = await cuts(port, None)
            self.assertIsInstance(seed, int)
            self.assertEqual(await cuts(port, seed), (seed, first))
            self.assertNotEqual((await cuts(port, seed + 1))[1], first)
        self.assertEqual(sum(first), 200)
        self.assertGreater(len(set(first)), 1)

    async def test_cancelled_sweep_is_no_failure(self) -> None:
        """A deadline that cancels a hanging body ends the sweep there: no
        FragmentationFailed, nothing left."""
        runs: list[Proxy] = []

        async def hangs(proxy: Proxy) -> None:
            runs.append(proxy)
            async with connected(proxy) as stream:
                await stream.readline()  # the server never answers

        async with serving(Factory.forProtocol(Protocol)) as port:

            @deadline(0.5)
            async def sweep() -> None:
                await sweep_fragmentation(port, hangs)

            async with clean_reactor():
                with self.assertRaises(DeadlineExceeded):
                    await sweep()
        self.assertEqual(len(runs), 1)

    async def test_reactor_is_passed_on(self) -> None:
        """sweep_fragmentation(reactor=...) makes each proxy on that reactor:
        on one not running, each run fails at its entry, before the body."""
        other = SelectReactor()
        self.addCleanup(other.waker.connectionLost, None)
        ran: list[Proxy] = []

        async def body(proxy: Proxy) -> None:
            ran.append(proxy)

        async with serving(Factory.forProtocol(LinePing)) as port:
            with self.assertRaises(FragmentationFailed) as caught:
                await sweep_fragmentation(
                    port, body, chunkings=[("whole", [])], reactor=other
                )
        self.assertEqual(ran, [])
        self.assertIsInstance(caught.exception.__cause__, ReactorNotRunning)

    async def test_timeout_bounds_each_exit(self) -> None:
        """sweep_fragmentation(timeout=...) is each proxy's: a leg that cannot
        close fails that run with CleanupTimeout after it."""

        async def body(proxy: Proxy) -> None:
            await get_stuck(self, proxy, port, raw)

        with socket.socket() as raw:
            async with serving(flood(4 << 20)) as port:
                with self.assertRaises(FragmentationFailed) as caught:
                    await sweep_fragmentation(
                        port, body, chunkings=[("held", [stop_reading()])], timeout=0.5
                    )
        [(name, error)] = caught.exception.failures
        self.assertIsInstance(error, CleanupTimeout)
        assert isinstance(error, CleanupTimeout)
        self.assertEqual((name, error.scope, error.timeout), ("held", "proxied()", 0.5))

    async def test_bad_chunkings_refused(self) -> None:
        """Chunkings that are not (name, faults) pairs, or share a name, are
        refused before anything runs, saying which."""
        pair = 'each chunking is a (name, faults) pair, such as ("1 byte", [slicer(1)])'
        one = slicer(1)
        cases: list[tuple[Any, type[Exception], str]] = [
            ([["x", [one]]], TypeError, f"{pair}; got ['x', [{one!r}]]"),
            ([("x",)], TypeError, f"{pair}; got ('x',)"),
            ([("x", [], 1)], TypeError, f"{pair}; got ('x', [], 1)"),
            ([(1, [one])], TypeError, f"{pair}; got (1, [{one!r}])"),
            ([("x", one)], TypeError, f"{pair}; got ('x', {one!r})"),
            ([("x", [one, 1])], TypeError, f"{pair}; got ('x', [{one!r}, 1])"),
            (
                [("x", [one]), ("y", []), ("x", [])],
                ValueError,
                "two chunkings are named 'x'",
            ),
            ([], ValueError, "no chunkings to run"),
        ]
        async with serving(Factory.forProtocol(LinePing)) as port:
            for chunkings, kind, message in cases:
                with self.assertRaises(kind) as caught:
                    await sweep_fragmentation(port, ping, chunkings=chunkings)
                self.assertEqual(
                    str(caught.exception), f"sweep_fragmentation(): {message}"
                )

    async def test_bad_seed_and_timeout_refused(self) -> None:
        """A seed that is not an int, or a timeout that is no duration, is
        refused before anything runs, saying which."""
        async with serving(Factory.forProtocol(LinePing)) as port:
            for seed in ("1", True):
                with self.assertRaises(TypeError) as caught:
                    await sweep_fragmentation(port, ping, seed=seed)  # type: ignore[arg-type]
                self.assertEqual(
                    str(caught.exception),
                    f"sweep_fragmentation(): seed must be an int, got {seed!r}",
                )
            with self.assertRaises(ValueError) as caught:
                await sweep_fragmentation(port, ping, timeout=0)
            self.assertTrue(str(caught.exception).startswith("sweep_fragmentation(): "))

    async def test_body_must_be_callable(self) -> None:
        """A body that is not a function is refused at once, named."""
        async with serving(Factory.forProtocol(LinePing)) as port:
            with self.assertRaises(TypeError) as caught:
                await sweep_fragmentation(port, b"body")  # type: ignore[arg-type]
        self.assertEqual(
            str(caught.exception),
            "sweep_fragmentation() takes an async function of the proxy as body, "
            "got b'body'",
        )


# Bad input -----------------------------------------------------------------------


class BadInputTests(TestCase):
    def assert_nothing_left(self, sets: int) -> None:
        self.assertEqual(len(_live), sets)

    async def test_wrong_target(self) -> None:
        """A target that is no server is refused at the call, leaving nothing."""
        sets = len(_live)
        for target in (42, object(), None):
            with self.assertRaises(TypeError) as caught:
                proxied(target)
            self.assertEqual(
                str(caught.exception),
                "proxied() takes the server to proxy: a port from serving() (or "
                "anything with getHost()), a client endpoint string such as "
                f"'tcp:127.0.0.1:8080', or an IStreamClientEndpoint; got {target!r}",
            )
        self.assert_nothing_left(sets)

    async def test_target_address_that_is_no_tcp(self) -> None:
        """A target whose getHost() is no TCP or UNIX address is refused at
        the call, naming proxied(), leaving nothing."""
        sets = len(_live)
        address = ("somewhere", 80)
        with self.assertRaises(TypeError) as caught:
            proxied(_Addressed(address))
        self.assertEqual(
            str(caught.exception),
            "proxied(): cannot derive a client endpoint from the address "
            f"{address!r}; pass a client endpoint (an IStreamClientEndpoint "
            "or a client endpoint string) for this server instead.",
        )
        self.assert_nothing_left(sets)

    async def test_non_fault_in_faults(self) -> None:
        """Something not a fault (latency without its call) is refused, named."""
        sets = len(_live)
        async with serving(Factory.forProtocol(PlainEcho)) as port:
            for name, bad in (
                ("faults", latency),
                ("upstream", 1),
                ("downstream", "slicer"),
            ):
                with self.assertRaises(TypeError) as caught:
                    proxied(port, **{name: [slicer(1), bad]})  # type: ignore[arg-type]
                self.assertEqual(
                    str(caught.exception),
                    f"proxied({name}=...) takes faults such as "
                    f"cleanconn.latency(0.05) or cleanconn.slicer(1), got {bad!r}",
                )
        self.assert_nothing_left(sets)

    def test_bad_fault_arguments(self) -> None:
        """Each fault refuses arguments that mean nothing, saying which, word
        for word."""
        cases: list[tuple[Callable[[], Fault], type[Exception], str]] = [
            (lambda: slicer(0), ValueError, "slicer(): size must be 1 or more, got 0"),
            (lambda: slicer(1.5), TypeError, "slicer(): size must be an int, got 1.5"),  # type: ignore[arg-type]
            (
                lambda: slicer(True),
                TypeError,
                "slicer(): size must be an int, got True",
            ),
            (
                lambda: slicer(2, variation=-1),
                ValueError,
                "slicer(): variation must be 0 or more, got -1",
            ),
            (
                lambda: slicer(2, variation="1"),  # type: ignore[arg-type]
                TypeError,
                "slicer(): variation must be an int, got '1'",
            ),
            (
                lambda: slicer(2, variation=2),
                ValueError,
                "slicer(): variation must be less than size (2), got 2",
            ),
            (
                lambda: slicer(1, delay=-1),
                ValueError,
                "slicer(): delay must be finite and 0 or more, got -1",
            ),
            (
                lambda: slicer(1, delay="0"),  # type: ignore[arg-type]
                TypeError,
                "slicer(): delay must be a number of seconds, got '0'",
            ),
            (
                lambda: latency(-1),
                ValueError,
                "latency(): seconds must be finite and 0 or more, got -1",
            ),
            (
                lambda: latency(float("nan")),
                ValueError,
                "latency(): seconds must be finite and 0 or more, got nan",
            ),
            (
                lambda: latency(float("inf")),
                ValueError,
                "latency(): seconds must be finite and 0 or more, got inf",
            ),
            (
                lambda: latency("1"),  # type: ignore[arg-type]
                TypeError,
                "latency(): seconds must be a number of seconds, got '1'",
            ),
            (
                lambda: latency(True),
                TypeError,
                "latency(): seconds must be a number of seconds, got True",
            ),
            (
                lambda: latency(1, jitter=-0.5),
                ValueError,
                "latency(): jitter must be finite and 0 or more, got -0.5",
            ),
            (
                lambda: latency(1, jitter=None),  # type: ignore[arg-type]
                TypeError,
                "latency(): jitter must be a number of seconds, got None",
            ),
            (
                lambda: bandwidth(0),
                ValueError,
                "bandwidth(): rate must be bytes per second, more than 0, got 0",
            ),
            (
                lambda: bandwidth(-5),
                ValueError,
                "bandwidth(): rate must be bytes per second, more than 0, got -5",
            ),
            (
                lambda: bandwidth(float("nan")),
                ValueError,
                "bandwidth(): rate must be bytes per second, more than 0, got nan",
            ),
            (
                lambda: bandwidth(True),
                ValueError,
                "bandwidth(): rate must be bytes per second, more than 0, got True",
            ),
            (
                lambda: bandwidth("5"),  # type: ignore[arg-type]
                ValueError,
                "bandwidth(): rate must be bytes per second, more than 0, got '5'",
            ),
            (
                lambda: reset_peer(after=-1),
                ValueError,
                "reset_peer(): after must be 0 or more, got -1",
            ),
            (
                lambda: reset_peer(after=1.0),  # type: ignore[arg-type]
                TypeError,
                "reset_peer(): after must be an int, got 1.0",
            ),
            (
                lambda: limit_data(-1),
                ValueError,
                "limit_data(): limit must be 0 or more, got -1",
            ),
            (
                lambda: limit_data(False),
                TypeError,
                "limit_data(): limit must be an int, got False",
            ),
            (
                lambda: slow_close(-1),
                ValueError,
                "slow_close(): seconds must be finite and 0 or more, got -1",
            ),
            (
                lambda: slow_close("1"),  # type: ignore[arg-type]
                TypeError,
                "slow_close(): seconds must be a number of seconds, got '1'",
            ),
        ]
        for make, kind, message in cases:
            with self.assertRaises(kind) as caught:
                make()
            self.assertEqual(str(caught.exception), message)

    async def test_remove_a_fault_not_there(self) -> None:
        """Direction.remove() of a fault it has not: ValueError naming both."""
        async with serving(Factory.forProtocol(PlainEcho)) as port:
            async with proxied(port, upstream=[slicer(1)]) as proxy:
                with self.assertRaises(ValueError) as caught:
                    proxy.downstream.remove(proxy.upstream.faults[0])
                self.assertEqual(
                    str(caught.exception),
                    "<cleanconn fault slicer(1)> is not a fault of "
                    "<cleanconn proxy downstream: no faults, 0 bytes>",
                )
                self.assertEqual(len(proxy.upstream.faults), 1)

    async def test_add_is_all_or_nothing(self) -> None:
        """add() with one bad fault adds none of them."""
        async with serving(Factory.forProtocol(PlainEcho)) as port:
            async with proxied(port) as proxy:
                with self.assertRaises(TypeError) as caught:
                    proxy.add(slicer(1), "latency")  # type: ignore[arg-type]
                self.assertEqual(
                    str(caught.exception),
                    "proxy.upstream.add() takes faults such as "
                    "cleanconn.latency(0.05) or cleanconn.slicer(1), got 'latency'",
                )
                self.assertEqual(
                    (proxy.upstream.faults, proxy.downstream.faults), ([], [])
                )

    async def test_reactor_not_running(self) -> None:
        """proxied(reactor=...) runs on that reactor: one not running fails the
        entry at once, naming proxied()."""
        other = SelectReactor()
        self.addCleanup(other.waker.connectionLost, None)
        async with serving(Factory.forProtocol(PlainEcho)) as port:
            with self.assertRaises(ReactorNotRunning) as caught:
                async with proxied(port, reactor=other):
                    self.fail("the body ran")
        self.assertTrue(str(caught.exception).startswith("proxied(): the reactor "))

    async def test_bad_seed_and_timeout(self) -> None:
        """A seed that is not an int, or a timeout that is no duration, is refused."""
        sets = len(_live)
        async with serving(Factory.forProtocol(PlainEcho)) as port:
            for seed in ("1", 1.0, True):
                with self.assertRaises(TypeError) as caught:
                    proxied(port, seed=seed)  # type: ignore[arg-type]
                self.assertEqual(
                    str(caught.exception),
                    f"proxied(): seed must be an int, got {seed!r}",
                )
            with self.assertRaises(ValueError):
                proxied(port, timeout=0)
        self.assert_nothing_left(sets)


# What faults and proxies show -----------------------------------------------------


class ShownTests(TestCase):
    def test_fault_reprs(self) -> None:
        """Each fault shows the call that made it, its numbers as it took them."""
        shown = {
            latency(0): "latency(0.0)",
            latency(2): "latency(2.0)",
            latency(0.05, jitter=0.01): "latency(0.05, jitter=0.01)",
            latency(1, jitter=1): "latency(1.0, jitter=1.0)",
            bandwidth(1000): "bandwidth(1000 bytes/s)",
            bandwidth(1500.5): "bandwidth(1500.5 bytes/s)",
            bandwidth(0.5): "bandwidth(0.5 bytes/s)",
            slicer(): "slicer(1)",
            slicer(5, variation=3): "slicer(5, variation=3)",
            slicer(4, delay=0.01): "slicer(4, delay=0.01)",
            slicer(4, variation=1, delay=2): "slicer(4, variation=1, delay=2.0)",
            stop_reading(): "stop_reading()",
            blackhole(): "blackhole()",
            reset_peer(): "reset_peer(after=0)",
            reset_peer(after=3): "reset_peer(after=3)",
            limit_data(0): "limit_data(0)",
            limit_data(4): "limit_data(4)",
            slow_close(0): "slow_close(0.0)",
            slow_close(0.3): "slow_close(0.3)",
            Fault(): "fault",
        }
        self.assertEqual(
            {repr(fault): name for fault, name in shown.items()},
            {f"<cleanconn fault {name}>": name for name in shown.values()},
        )

    def test_only_slow_close_holds_back_an_end(self) -> None:
        """slow_close(s) holds back a close by s seconds; no other fault does."""
        others = [latency(1), bandwidth(10), slicer(2), blackhole(), limit_data(1)]
        self.assertEqual([f.end_delay() for f in others], [0.0] * 5)
        self.assertEqual(slow_close(2).end_delay(), 2.0)

    async def test_pipe_repr(self) -> None:
        """A pipe (what a fault is given) shows its direction and what it holds."""
        async with serving(Factory.forProtocol(PlainEcho)) as port:
            async with proxied(port) as proxy, connected(proxy) as stream:
                stream.write(b"x")
                await stream.readexactly(1)  # both legs are connected
                proxy.upstream.add(latency(30))
                queued = when_queued(proxy.upstream)
                stream.write(b"held")
                await queued
                link = the_link(proxy)
                self.assertEqual(
                    (repr(link.upstream), repr(link.downstream)),
                    (
                        "<cleanconn proxy pipe upstream: 4 bytes queued>",
                        "<cleanconn proxy pipe downstream: 0 bytes queued>",
                    ),
                )

    async def test_a_new_proxy(self) -> None:
        """A proxy just entered: its target and seed as given, up, with no
        connection, failure or byte yet, and no TLS for a plain port."""
        async with serving(Factory.forProtocol(PlainEcho)) as port:
            async with proxied(port, seed=3) as proxy:
                self.assertEqual(
                    (proxy.target, proxy.seed, proxy.is_down, proxy.tls),
                    (port, 3, False, None),
                )
                self.assertIs(proxy.is_down, False)
                self.assertEqual((proxy.connections, proxy.failures), (0, []))
                self.assertEqual(
                    [
                        (d.name, d.faults, d.bytes)
                        for d in (proxy.upstream, proxy.downstream)
                    ],
                    [("upstream", [], 0), ("downstream", [], 0)],
                )
                self.assertIsInstance(proxy.port, ServingPort)
                self.assertEqual(proxy.getHost(), proxy.port.getHost())

    async def test_port_accept_times_out(self) -> None:
        """The proxy's port times an accept() out on the proxy's reactor, as
        any serving() port does."""
        async with serving(Factory.forProtocol(PlainEcho)) as port:
            async with proxied(port) as proxy:
                with self.assertRaises(WaitTimeout):
                    await proxy.port.accept(timeout=0.01)

    async def test_a_fresh_seed_by_default(self) -> None:
        """Without seed=, a proxy draws an int seed (to pass back as seed=),
        shown in its repr."""
        async with serving(Factory.forProtocol(PlainEcho)) as port:
            async with proxied(port) as proxy:
                self.assertIs(type(proxy.seed), int)
                self.assertTrue(repr(proxy).endswith(f", seed={proxy.seed}>"))

    async def test_direction_and_proxy_reprs(self) -> None:
        """A direction shows its faults in order and its bytes; the proxy, its
        target, each direction's faults and its seed."""
        async with serving(Factory.forProtocol(PlainEcho)) as port:
            faults = [latency(0.5), slicer(2)]
            async with proxied(port, upstream=faults, seed=7) as proxy:
                address = f"127.0.0.1:{port.getHost().port}"
                self.assertEqual(
                    repr(proxy.upstream),
                    "<cleanconn proxy upstream: latency(0.5), slicer(2), 0 bytes>",
                )
                self.assertEqual(
                    repr(proxy.downstream),
                    "<cleanconn proxy downstream: no faults, 0 bytes>",
                )
                self.assertEqual(
                    repr(proxy),
                    f"<cleanconn proxy to {address}, upstream: latency(0.5), "
                    "slicer(2), seed=7>",
                )
                proxy.downstream.add(blackhole(), slow_close(1))
                self.assertEqual(
                    repr(proxy),
                    f"<cleanconn proxy to {address}, upstream: latency(0.5), "
                    "slicer(2); downstream: blackhole(), slow_close(1.0), seed=7>",
                )
                proxy.clear()
                self.assertEqual(
                    repr(proxy), f"<cleanconn proxy to {address}, no faults, seed=7>"
                )

    async def test_faults_for_both_directions_come_first(self) -> None:
        """proxied(faults=...) act in both directions, before those given for
        one direction only."""
        both, up, down = latency(0.5), slicer(2), blackhole()
        async with serving(Factory.forProtocol(PlainEcho)) as port:
            async with proxied(
                port, faults=[both], upstream=[up], downstream=[down]
            ) as proxy:
                self.assertEqual(
                    (proxy.upstream.faults, proxy.downstream.faults),
                    ([both, up], [both, down]),
                )
