"""Streams: connected() and serving() with no factory, and their reads and writes."""

from __future__ import annotations

import os
import struct
from typing import Any

from twisted.internet import defer, reactor, tcp
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.basic import Int32StringReceiver, LineReceiver
from zope.interface import implementer

from cleanconn import (
    DeadlineExceeded,
    IncompleteReadError,
    Stream,
    StreamClosed,
    WaitTimeout,
    connected,
    deadline,
    serving,
)
from cleanconn._streams import HIGH_WATER

from ._helpers import CountingFactory, Echo, TestCase, echo_factory, own_readers_writers
from .test_transports import has_ipv6

#: 16 MB of bytes that are not all alike, so that reordering would show.
BIG = os.urandom(1 << 16) * 256


class Upper(LineReceiver):
    """A line server: answers each line in capitals."""

    def lineReceived(self, line: bytes) -> None:
        self.sendLine(line.upper())


class Lengths(Int32StringReceiver):
    """A length-prefixed server: answers each message with its reverse."""

    def stringReceived(self, string: bytes) -> None:
        self.sendString(string[::-1])


class SendThenClose(Protocol):
    """Sends the factory's ``payload`` at once, then closes."""

    def connectionMade(self) -> None:
        self.transport.write(self.factory.payload)
        self.transport.loseConnection()


class SendThenAbort(Protocol):
    """Sends the factory's ``payload``, then resets the connection."""

    def connectionMade(self) -> None:
        self.transport.write(self.factory.payload)
        self.transport.abortConnection()


def sending(protocol: type[Protocol], payload: bytes) -> Any:
    factory = Factory.forProtocol(protocol)
    factory.payload = payload
    return factory


def first_arrival(stream: Stream, count: int = 1) -> defer.Deferred[None]:
    """Fires once ``stream`` has been given ``count`` more bytes (instrumentation:
    a spy around its dataReceived, which still gets them)."""
    arrived: defer.Deferred[None] = defer.Deferred()
    receive = stream.dataReceived
    given = [0]

    def spy(data: bytes) -> None:
        receive(data)
        given[0] += len(data)
        if given[0] >= count and not arrived.called:
            arrived.callback(None)

    stream.dataReceived = spy  # type: ignore[method-assign]
    return arrived


def next_pause(stream: Stream) -> defer.Deferred[None]:
    """Fires once ``stream`` next pauses its transport (instrumentation: a
    spy around the transport's pauseProducing, which still pauses it)."""
    paused: defer.Deferred[None] = defer.Deferred()
    transport: Any = stream.transport

    def pausing() -> None:
        del transport.pauseProducing  # the spy goes
        transport.pauseProducing()
        paused.callback(None)

    transport.pauseProducing = pausing
    return paused


def addresses(stream: Stream) -> str:
    """The stream's two addresses as its repr gives them."""
    transport: Any = stream.transport
    return (
        f"127.0.0.1:{transport.getHost().port} -> 127.0.0.1:{transport.getPeer().port}"
    )


class RecordingReactor:
    """The global reactor, noting the delay of each callLater; the TCP
    connections it makes are its own (their ``reactor`` is this one)."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def callLater(self, delay: float, *args: Any, **kwargs: Any) -> Any:
        self.delays.append(delay)
        return reactor.callLater(delay, *args, **kwargs)

    def connectTCP(
        self, host: str, port: int, factory: Any, timeout: float = 30
    ) -> Any:
        connector = tcp.Connector(host, port, factory, timeout, None, self)
        connector.connect()
        return connector

    def __getattr__(self, name: str) -> Any:
        return getattr(reactor, name)


@implementer(IPushProducer)
class Flood(Protocol):
    """Writes until its transport says stop (its peer's reading paused)."""

    def connectionMade(self) -> None:
        self.paused: defer.Deferred[None] = defer.Deferred()
        self.sent = 0
        self.transport.registerProducer(self, True)
        self.resumeProducing()

    def resumeProducing(self) -> None:
        self._going = True
        while self._going and self.sent < 64 * HIGH_WATER:
            self.transport.write(b"x" * 65536)
            self.sent += 65536

    def pauseProducing(self) -> None:
        self._going = False
        if not self.paused.called:
            self.paused.callback(None)

    def stopProducing(self) -> None:
        self._going = False


class StreamClientTests(TestCase):
    async def test_no_factory_yields_a_stream(self) -> None:
        """connected(port) with no factory yields a Stream on the client side."""
        async with serving(echo_factory()) as port, connected(port) as stream:
            self.assertIsInstance(stream, Stream)

    async def test_line_protocol(self) -> None:
        """write() and readline() talk to a LineReceiver server."""
        async with serving(Factory.forProtocol(Upper)) as port:
            async with connected(port) as stream:
                stream.write(b"hello\r\nworld\r\n")
                self.assertEqual(await stream.readline(), b"HELLO\r\n")
                self.assertEqual(await stream.readline(), b"WORLD\r\n")

    async def test_length_prefixed_protocol(self) -> None:
        """readexactly() reads a binary length-prefixed reply whole."""
        async with serving(Factory.forProtocol(Lengths)) as port:
            async with connected(port) as stream:
                stream.write(struct.pack("!I", 5) + b"abcde")
                (size,) = struct.unpack("!I", await stream.readexactly(4))
                self.assertEqual(await stream.readexactly(size), b"edcba")

    async def test_readuntil_keeps_what_follows(self) -> None:
        """readuntil() returns up to the separator and leaves the rest buffered."""
        async with serving(echo_factory()) as port, connected(port) as stream:
            stream.write(b"one||two||")
            self.assertEqual(await stream.readuntil(b"||"), b"one||")
            self.assertEqual(await stream.readuntil(b"||"), b"two||")

    async def test_separator_split_across_chunks(self) -> None:
        """A separator that arrives in two writes is still found."""
        async with serving(echo_factory()) as port, connected(port) as stream:
            reading = stream.readuntil(b"END")
            stream.write(b"abcE")
            server = port.server_protocol(stream)
            await server.received(4)
            self.assertFalse(reading.called)
            stream.write(b"ND")
            self.assertEqual(await reading, b"abcEND")

    async def test_separator_first_in_what_arrives(self) -> None:
        """A readuntil() that waits finds its separator at the start of what arrives."""
        async with serving() as port, connected(port) as client:
            server = await port.accept()
            reading = client.readuntil(b"||")
            server.write(b"||")
            server.close()
            self.assertEqual(await reading, b"||")

    async def test_read_n_returns_what_is_there(self) -> None:
        """read(n) returns as soon as some bytes are there, at most n."""
        async with serving(echo_factory()) as port, connected(port) as stream:
            stream.write(b"abcdef")
            await port.server_protocol(stream).received(6)
            first = await stream.read(4)
            self.assertTrue(0 < len(first) <= 4)
            rest = await stream.readexactly(6 - len(first))
            self.assertEqual(first + rest, b"abcdef")

    async def test_read_until_eof(self) -> None:
        """read() returns everything the server sent once it closed."""
        payload = b"all of it" * 1000
        async with serving(sending(SendThenClose, payload)) as port:
            async with connected(port) as stream:
                self.assertEqual(await stream.read(), payload)
                self.assertTrue(stream.at_eof())

    async def test_at_eof_false_while_data_is_left(self) -> None:
        """at_eof() is false while the stream ended but has unread bytes."""
        async with serving(sending(SendThenClose, b"line\nrest")) as port:
            async with connected(port) as stream:
                self.assertEqual(await stream.readline(), b"line\n")
                await stream.readuntil(b"t")
                self.assertFalse(stream.at_eof())
                self.assertEqual(await stream.read(), b"")
                self.assertTrue(stream.at_eof())

    async def test_readline_at_eof_returns_the_rest(self) -> None:
        """readline() at the end returns the unterminated rest, then b''."""
        async with serving(sending(SendThenClose, b"no newline")) as port:
            async with connected(port) as stream:
                self.assertEqual(await stream.readline(), b"no newline")
                self.assertEqual(await stream.readline(), b"")

    async def test_eof_mid_readexactly(self) -> None:
        """EOF before n bytes raises IncompleteReadError carrying what came."""
        async with serving(sending(SendThenClose, b"abc")) as port:
            async with connected(port) as stream:
                with self.assertRaises(IncompleteReadError) as caught:
                    await stream.readexactly(10)
        error = caught.exception
        self.assertEqual((error.partial, error.expected), (b"abc", 10))
        self.assertIsNone(error.reason)
        self.assertIsInstance(error, EOFError)
        self.assertEqual(
            str(error),
            "readexactly(10): the stream ended (the peer closed its side) with "
            "3 of 10 bytes: b'abc'. The peer sent less than the test expects, "
            "or closed early; e.partial has what it did send.",
        )

    async def test_incomplete_read_error_pickles(self) -> None:
        """IncompleteReadError survives pickling (trial -j and pytest-xdist
        send errors between processes), attributes and message alike."""
        import pickle

        factory = Factory.forProtocol(SendThenClose)
        factory.payload = b"abc"
        async with serving(factory) as port, connected(port) as stream:
            with self.assertRaises(IncompleteReadError) as caught:
                await stream.readexactly(10)
        error = caught.exception
        copy = pickle.loads(pickle.dumps(error))
        self.assertEqual(
            (copy.partial, copy.expected, str(copy)),
            (error.partial, error.expected, str(error)),
        )

    async def test_eof_mid_readuntil(self) -> None:
        """EOF before the separator raises IncompleteReadError naming it."""
        async with serving(sending(SendThenClose, b"abc")) as port:
            async with connected(port) as stream:
                with self.assertRaises(IncompleteReadError) as caught:
                    await stream.readuntil(b"\r\n")
        self.assertEqual(caught.exception.partial, b"abc")
        self.assertEqual(
            str(caught.exception),
            "readuntil(b'\\r\\n'): the stream ended (the peer closed its side) "
            "with 3 bytes and no b'\\r\\n': b'abc'. The peer sent less than the "
            "test expects, or closed early; e.partial has what it did send.",
        )

    async def test_read_after_the_end(self) -> None:
        """read() and read(n) once the stream ended are b"" at once."""
        async with serving(sending(SendThenClose, b"")) as port:
            async with connected(port) as stream:
                self.assertEqual(await stream.read(), b"")
                self.assertEqual(self.successResultOf(stream.read()), b"")
                self.assertEqual(self.successResultOf(stream.read(5)), b"")

    async def test_reading_after_eof(self) -> None:
        """A readexactly() after the end fails at once, saying the stream ended."""
        async with serving(sending(SendThenClose, b"")) as port:
            async with connected(port) as stream:
                self.assertEqual(await stream.read(), b"")
                with self.assertRaises(IncompleteReadError) as caught:
                    await stream.readexactly(1)
        self.assertEqual(caught.exception.partial, b"")
        self.assertIn("the peer closed its side", str(caught.exception))

    async def test_reset_mid_read(self) -> None:
        """A reset ends a waiting read with IncompleteReadError giving the reason."""
        async with serving(sending(SendThenAbort, b"ab")) as port:
            async with connected(port) as stream:
                with self.assertRaises(IncompleteReadError) as caught:
                    await stream.readexactly(10)
        self.assertIsInstance(caught.exception.reason, ConnectionLost)
        self.assertEqual(caught.exception.ended, "the connection was lost")

    async def test_long_partial_is_shown_in_excerpt(self) -> None:
        """The message shows the start and end of a long partial, and its size."""
        payload = b"A" * 500 + b"Z" * 500
        async with serving(sending(SendThenClose, payload)) as port:
            async with connected(port) as stream:
                with self.assertRaises(IncompleteReadError) as caught:
                    await stream.readexactly(2000)
        message = str(caught.exception)
        self.assertIn("AAAA", message)
        self.assertIn("ZZZZ", message)
        self.assertIn("(1000 bytes)", message)
        self.assertLess(len(message), 400)

    async def test_read_timeout_consumes_nothing(self) -> None:
        """A read past its timeout raises WaitTimeout and leaves the data buffered."""
        async with serving(echo_factory()) as port, connected(port) as stream:
            stream.write(b"partial")
            await port.server_protocol(stream).received(7)
            with self.assertRaises(WaitTimeout) as caught:
                await stream.readuntil(b"\n", timeout=0.05)
            self.assertEqual(caught.exception.buffered, b"partial")
            self.assertIsInstance(caught.exception, defer.TimeoutError)
            stream.write(b"\n")
            self.assertEqual(await stream.readline(), b"partial\n")

    async def _timed_out(self, read: str, reading: Any, stream: Stream) -> None:
        """``reading`` (``read`` on ``stream``) fails with WaitTimeout after 0.05 s,
        naming the read and the stream."""
        with self.assertRaises(WaitTimeout) as caught:
            await reading
        self.assertEqual(
            str(caught.exception),
            f"{read} on <cleanconn.Stream {addresses(stream)}: 0 bytes unread> did "
            "not complete within timeout=0.05s. Nothing arrived. Is the peer "
            "sending what the test waits for? If it is merely slow, raise timeout=.",
        )

    async def test_readexactly_timeout(self) -> None:
        """readexactly(n, timeout=) raises WaitTimeout naming the read."""
        async with serving(echo_factory()) as port, connected(port) as stream:
            reading = stream.readexactly(5, timeout=0.05)
            await self._timed_out("readexactly(5)", reading, stream)

    async def test_read_all_timeout(self) -> None:
        """read(timeout=) raises WaitTimeout naming the read."""
        async with serving(echo_factory()) as port, connected(port) as stream:
            await self._timed_out("read()", stream.read(timeout=0.05), stream)

    async def test_read_n_timeout(self) -> None:
        """read(n, timeout=) raises WaitTimeout naming the read."""
        async with serving(echo_factory()) as port, connected(port) as stream:
            await self._timed_out("read(5)", stream.read(5, timeout=0.05), stream)

    async def test_timeout_on_the_stream_reactor(self) -> None:
        """A read's timeout= is timed on the reactor the stream was connected with."""
        recording: Any = RecordingReactor()
        async with serving() as port:
            async with connected(port, reactor=recording) as client:
                before = len(recording.delays)
                reading = client.readexactly(1, timeout=30)
                self.assertEqual(recording.delays[before:], [30.0])
                reading.cancel()
                self.failureResultOf(reading, defer.CancelledError)

    async def test_timeout_timer_cancelled_after_read(self) -> None:
        """A read that completes in time leaves no timer behind."""
        async with serving(echo_factory()) as port, connected(port) as stream:
            stream.write(b"x")
            self.assertEqual(await stream.readexactly(1, timeout=60), b"x")
            later = reactor.seconds() + 30
            calls = [c for c in self.timers() if c.getTime() > later]
            self.assertEqual(calls, [])

    async def test_one_read_at_a_time(self) -> None:
        """A second read while one waits is refused, naming the one waiting."""
        async with serving(echo_factory()) as port, connected(port) as stream:
            first = stream.readline()
            with self.assertRaises(RuntimeError) as caught:
                stream.readexactly(3)
            self.assertEqual(
                str(caught.exception),
                "readexactly(3): readline() is still waiting on this stream; a "
                "stream does one read at a time (as asyncio's StreamReader). "
                "Await each read before the next.",
            )
            first.cancel()
            self.failureResultOf(first, defer.CancelledError)

    async def test_cancelled_read_consumes_nothing(self) -> None:
        """A cancelled read gives way to the next, which gets all the data."""
        async with serving(echo_factory()) as port, connected(port) as stream:
            waiting = stream.readexactly(4)
            waiting.cancel()
            self.failureResultOf(waiting, defer.CancelledError)
            stream.write(b"data")
            self.assertEqual(await stream.readexactly(4), b"data")

    async def test_separator_search_after_a_timed_out_readuntil(self) -> None:
        """A readuntil() after one that timed out finds a separator already there."""
        async with serving() as port, connected(port) as client:
            server = await port.accept()
            server.write(b"abcde")
            with self.assertRaises(WaitTimeout):
                await client.readuntil(b"\n", timeout=0.05)
            server.write(b"\nrest")
            self.assertEqual(await client.readexactly(2), b"ab")
            self.assertEqual(await client.readuntil(b"\n"), b"cde\n")

    async def test_other_separator_after_a_cancelled_readline(self) -> None:
        """A readuntil() with another separator searches from the start again."""
        async with serving() as port, connected(port) as client:
            server = await port.accept()
            server.write(b"abcXY")
            self.assertEqual(await client.readuntil(b"c"), b"abc")
            waiting = client.readline()
            waiting.cancel()
            self.failureResultOf(waiting, defer.CancelledError)
            self.assertEqual(await client.readuntil(b"XY"), b"XY")

    async def test_readexactly_keeps_what_follows(self) -> None:
        """Bytes past n that arrive during a readexactly() are read next, once."""
        async with serving() as port, connected(port) as client:
            server = await port.accept()
            reading = client.readexactly(4)
            server.write(b"abcdef")
            server.close()
            self.assertEqual(await reading, b"abcd")
            self.assertEqual(await client.read(), b"ef")

    async def test_readexactly_after_one_that_waited(self) -> None:
        """A readexactly() after one that waited for its bytes waits for all n."""
        async with serving() as port, connected(port) as client:
            server = await port.accept()
            reading = client.readexactly(2)
            server.write(b"12")
            self.assertEqual(await reading, b"12")
            arrived = first_arrival(client)
            reading = client.readexactly(3)
            server.write(b"ab")
            await arrived
            server.write(b"c")
            self.assertEqual(await reading, b"abc")

    async def test_cancelled_read_keeps_what_arrived(self) -> None:
        """Bytes that arrived while a cancelled read waited are read next."""
        async with serving() as port, connected(port) as client:
            server = await port.accept()
            arrived = first_arrival(client)
            waiting = client.readexactly(10)
            server.write(b"abc")
            await arrived
            waiting.cancel()
            self.failureResultOf(waiting, defer.CancelledError)
            self.assertEqual(
                repr(client), f"<cleanconn.Stream {addresses(client)}: 3 bytes unread>"
            )
            self.assertEqual(await client.readexactly(3), b"abc")

    async def test_eof_while_read_waits(self) -> None:
        """EOF during a waiting readexactly() gives what arrived as .partial."""
        async with serving() as port, connected(port) as client:
            server = await port.accept()
            waiting = client.readexactly(10)
            server.write(b"abc")
            server.close_write()
            with self.assertRaises(IncompleteReadError) as caught:
                await waiting
        self.assertEqual(caught.exception.partial, b"abc")

    async def test_deadline_names_the_read(self) -> None:
        """A deadline that cancels a read says which read and what it had."""

        @deadline(0.1)
        async def body() -> None:
            async with serving(echo_factory()) as port, connected(port) as stream:
                stream.write(b"half a line")
                await stream.readline()

        with self.assertRaises(DeadlineExceeded) as caught:
            await body()
        message = str(caught.exception)
        self.assertIn("await stream.readline()", message)
        self.assertIn("readline() on <cleanconn.Stream", message)
        self.assertIn("no b'\\n' in them: b'half a line'", message)

    async def test_write_after_close(self) -> None:
        """write() after close() raises StreamClosed saying why."""
        async with serving(echo_factory()) as port, connected(port) as stream:
            stream.close()
            with self.assertRaises(StreamClosed) as caught:
                stream.write(b"late")
        self.assertEqual(
            str(caught.exception),
            "write(): this stream can no longer write (close() closed it). Write "
            "before closing; to send the end of the data and still read the "
            "reply, use close_write().",
        )

    async def test_close_ends_the_connection(self) -> None:
        """close() sends what was written, then closes the connection."""
        from cleanconn import lost

        async with serving() as port, connected(port) as client:
            server = await port.accept()
            client.write(b"bye")
            client.close()
            self.assertEqual(await server.read(), b"bye")
            await lost(client)

    def test_close_before_connecting(self) -> None:
        """close() on a Stream not connected yet closes its writing side, no more."""
        stream = Stream()
        stream.close()
        with self.assertRaises(StreamClosed) as caught:
            stream.write(b"late")
        self.assertEqual(caught.exception.why, "close() closed it")

    async def test_write_after_close_write(self) -> None:
        """write() after close_write() raises StreamClosed."""
        async with serving(echo_factory()) as port, connected(port) as stream:
            stream.close_write()
            with self.assertRaises(StreamClosed):
                stream.write(b"late")

    async def test_write_text_is_refused(self) -> None:
        """write() of a str raises TypeError telling to encode it."""
        async with serving(echo_factory()) as port, connected(port) as stream:
            with self.assertRaises(TypeError) as caught:
                stream.write("text")  # type: ignore[arg-type]
        self.assertEqual(
            str(caught.exception),
            "Stream.write() takes bytes, got str 'text'; encode text first "
            "(data.encode())",
        )

    async def test_write_bytes_like(self) -> None:
        """write() takes a bytearray and a memoryview as well as bytes."""
        async with serving() as port, connected(port) as client:
            server = await port.accept()
            # Annotated bytes (ChildOutput narrows it), accepted at run time:
            client.write(bytearray(b"ab"))  # type: ignore[arg-type]
            client.write(memoryview(b"cd"))  # type: ignore[arg-type]
            self.assertEqual(await server.readexactly(4), b"abcd")

    async def test_bad_read_arguments(self) -> None:
        """Reads refuse a negative count and an empty separator."""
        async with serving(echo_factory()) as port, connected(port) as stream:
            with self.assertRaises(ValueError):
                stream.readexactly(-1)
            with self.assertRaises(TypeError):
                stream.readuntil(b"")
            with self.assertRaises(ValueError):
                stream.read(-2)
            with self.assertRaises(ValueError):
                stream.readline(timeout=0)

    async def _refusal(self, error: type[Exception], call: Any) -> str:
        """The message of the ``error`` that ``call(stream)`` raises on a
        connected stream."""
        async with serving(echo_factory()) as port, connected(port) as stream:
            with self.assertRaises(error) as caught:
                call(stream)
        return str(caught.exception)

    async def test_negative_count_message(self) -> None:
        """A negative count's ValueError says what the read takes and what it got."""
        error = await self._refusal(ValueError, lambda s: s.read(-2))
        self.assertEqual(
            error,
            "Stream.read() takes -1 (all, until the end) or a number of bytes, got -2",
        )

    async def test_negative_readexactly_message(self) -> None:
        """readexactly()'s ValueError for a negative count says what it takes."""
        error = await self._refusal(ValueError, lambda s: s.readexactly(-1))
        self.assertEqual(
            error,
            "Stream.readexactly() takes a number of bytes, 0 or more, got -1",
        )

    async def test_readexactly_zero(self) -> None:
        """readexactly(0) is b"" at once."""
        async with serving(echo_factory()) as port, connected(port) as stream:
            self.assertEqual(self.successResultOf(stream.readexactly(0)), b"")

    async def test_bad_timeout_message(self) -> None:
        """A read's ValueError for a bad timeout= names the read."""
        error = await self._refusal(ValueError, lambda s: s.readexactly(3, timeout=0))
        self.assertEqual(
            error,
            "Stream.readexactly(3): timeout must be a positive, finite number of "
            "seconds (it bounds every exit), got 0",
        )

    async def test_empty_separator_message(self) -> None:
        """An empty separator's TypeError says it must be non-empty bytes."""
        error = await self._refusal(TypeError, lambda s: s.readuntil(b""))
        self.assertEqual(
            error,
            "Stream.readuntil(): the separator must be non-empty bytes, got b''",
        )

    async def test_readuntil_defaults_to_newline(self) -> None:
        """readuntil() with no separator reads up to and including b"\\n"."""
        async with serving(sending(SendThenClose, b"one\ntwo\n")) as port:
            async with connected(port) as stream:
                self.assertEqual(await stream.readuntil(), b"one\n")

    async def test_read_nothing(self) -> None:
        """read(0) is b"" at once, whatever is buffered."""
        async with serving(echo_factory()) as port, connected(port) as stream:
            self.assertEqual(self.successResultOf(stream.read(0)), b"")

    async def test_counts_of_the_wrong_type(self) -> None:
        """A count that is not an int is a TypeError naming its type."""
        async with serving(echo_factory()) as port, connected(port) as stream:
            with self.assertRaises(TypeError) as caught:
                stream.readexactly("5")  # type: ignore[arg-type]
            self.assertIn("got str '5'", str(caught.exception))
            with self.assertRaises(TypeError):
                stream.read(1.5)  # type: ignore[arg-type]

    async def test_close_write_twice(self) -> None:
        """close_write() a second time raises StreamClosed saying why."""
        async with serving(echo_factory()) as port, connected(port) as stream:
            stream.close_write()
            with self.assertRaises(StreamClosed) as caught:
                stream.close_write()
        self.assertEqual(
            str(caught.exception),
            "close_write(): this stream can no longer write (close_write() closed "
            "it). Write everything before close_write().",
        )

    async def test_close_write_after_the_peer_closed(self) -> None:
        """close_write() once the peer has closed its side ends the connection."""
        from cleanconn import lost

        async with serving() as port, connected(port) as client:
            server = await port.accept()
            server.close_write()
            self.assertEqual(await client.read(), b"")
            client.close_write()
            await lost(client)
            self.assertEqual(await server.read(), b"")

    async def test_waiting_read_repr(self) -> None:
        """A waiting read's repr says what it waits for; once done, its result."""
        async with serving() as port, connected(port) as client:
            server = await port.accept()
            reading = client.read(5)
            self.assertEqual(
                repr(reading),
                f"<read(5) on <cleanconn.Stream {addresses(client)}: 0 bytes unread>>",
            )
            server.write(b"hi")
            self.assertEqual(await reading, b"hi")
            self.assertIn("current result: b'hi'", repr(reading))

    async def test_repr(self) -> None:
        """A new stream's repr gives its address, its peer's, and 0 bytes unread."""
        async with serving() as port, connected(port) as client:
            self.assertEqual(
                repr(client), f"<cleanconn.Stream {addresses(client)}: 0 bytes unread>"
            )

    async def test_repr_at_the_end(self) -> None:
        """Once the stream ended, its repr says how."""
        async with serving(sending(SendThenClose, b"")) as port:
            async with connected(port) as stream:
                self.assertEqual(await stream.read(), b"")
                self.assertEqual(
                    repr(stream),
                    f"<cleanconn.Stream {addresses(stream)}: 0 bytes unread, "
                    "the peer closed its side>",
                )

    def test_repr_before_connecting(self) -> None:
        """A Stream not connected yet has a repr, with no addresses."""
        self.assertEqual(repr(Stream()), "<cleanconn.Stream: 0 bytes unread>")

    async def test_waiting_readexactly_repr(self) -> None:
        """A waiting readexactly()'s repr counts what arrived for it and shows
        it, past 40 bytes its start and end."""
        async with serving() as port, connected(port) as client:
            server = await port.accept()
            waiting = client.readexactly(100)
            for chunk in (b"a" * 20, b"b" * 21):
                arrived = first_arrival(client)
                server.write(chunk)
                await arrived
            self.assertEqual(
                repr(waiting),
                f"<readexactly(100) on <cleanconn.Stream {addresses(client)}: "
                f"41 bytes unread>, 100 needed: b'{'a' * 20}' ... b'{'b' * 20}' "
                "(41 bytes)>",
            )
            waiting.cancel()
            self.failureResultOf(waiting, defer.CancelledError)

    async def test_repr_after_the_connection_is_gone(self) -> None:
        """A stream whose socket is gone still has a repr (its local address
        is gone with the socket)."""
        async with serving() as port:
            async with connected(port) as client:
                pass
            self.assertRegex(repr(client), r"^<cleanconn\.Stream \? -> 127\.0\.0\.1:")

    async def test_open_after_the_peer_closed_its_side(self) -> None:
        """After the peer's close_write(), the stream still writes, again and again."""
        async with serving() as port, connected(port) as client:
            server = await port.accept()
            server.close_write()
            self.assertEqual(await client.read(), b"")
            client.write(b"1")
            self.assertEqual(await server.readexactly(1), b"1")
            client.write(b"2")
            self.assertEqual(await server.readexactly(1), b"2")

    async def test_write_after_the_connection_was_lost(self) -> None:
        """write() once the peer reset the connection raises StreamClosed saying so."""
        async with serving(sending(SendThenAbort, b"")) as port:
            async with connected(port) as stream:
                with self.assertRaises(IncompleteReadError):
                    await stream.readexactly(1)
                with self.assertRaises(StreamClosed) as caught:
                    stream.write(b"late")
        self.assertEqual(
            str(caught.exception),
            "write(): this stream can no longer write (the connection was lost). "
            "Write before closing; to send the end of the data and still read the "
            "reply, use close_write().",
        )

    async def test_read_waiting_at_exit(self) -> None:
        """A read still waiting when its connected() block ends fails, saying
        the connection was closed."""
        async with serving() as port:
            async with connected(port) as client:
                reading = client.readexactly(1)
        error = self.failureResultOf(reading, IncompleteReadError).value
        self.assertEqual(error.ended, "the connection was closed")

    async def test_read_after_close(self) -> None:
        """A read after close() closed the connection says this side closed it."""
        from cleanconn import lost

        async with serving() as port, connected(port) as client:
            client.close()
            await lost(client)
            with self.assertRaises(IncompleteReadError) as caught:
                await client.readexactly(1)
        self.assertEqual(
            str(caught.exception),
            "readexactly(1): the stream ended (this side closed it) with 0 of 1 "
            "bytes. The peer sent less than the test expects, or closed early; "
            "e.partial has what it did send.",
        )

    async def test_half_close_then_read_reply(self) -> None:
        """close_write() sends EOF and the reply still arrives."""
        async with serving() as port, connected(port) as client:
            server = await port.accept()
            client.write(b"request")
            client.close_write()
            self.assertEqual(await server.read(), b"request")
            server.write(b"reply")
            server.close()
            self.assertEqual(await client.read(), b"reply")

    async def test_sixteen_megabytes_each_way(self) -> None:
        """16 MB each way arrive whole and in order."""
        async with serving() as port, connected(port) as client:
            server = await port.accept()
            client.write(BIG)
            self.assertEqual(await server.readexactly(len(BIG)), BIG)
            server.write(BIG)
            self.assertEqual(await client.readexactly(len(BIG)), BIG)

    async def test_unread_stream_stops_reading(self) -> None:
        """A stream nobody reads pauses past HIGH_WATER bytes; a read resumes it."""
        async with serving(Factory.forProtocol(Flood)) as port:
            async with connected(port) as stream:
                transport: Any = stream.transport
                await next_pause(stream)
                self.assertGreater(len(stream._buffer), HIGH_WATER)
                self.assertLessEqual(len(stream._buffer), HIGH_WATER + 65536)
                self.assertNotIn(transport, reactor.getReaders())
                wanted = 4 * HIGH_WATER  # more than is buffered: needs reading
                self.assertEqual(len(await stream.readexactly(wanted)), wanted)

    async def test_pauses_again_after_a_read(self) -> None:
        """A stream a read resumed pauses again once unread bytes pass HIGH_WATER."""
        async with serving(Factory.forProtocol(Flood)) as port:
            async with connected(port) as stream:
                await next_pause(stream)
                wanted = 4 * HIGH_WATER  # more than is buffered: needs reading
                self.assertEqual(len(await stream.readexactly(wanted)), wanted)
                await next_pause(stream)
                self.assertNotIn(stream.transport, reactor.getReaders())

    async def test_keeps_reading_at_high_water(self) -> None:
        """A stream nobody reads holding exactly HIGH_WATER bytes still reads."""
        async with serving() as port, connected(port) as client:
            server = await port.accept()
            arrived = first_arrival(client, HIGH_WATER)
            server.write(b"x" * HIGH_WATER)
            await arrived
            self.assertIn(client.transport, reactor.getReaders())

    async def test_exit_closes_both_sides(self) -> None:
        """Leaving the scopes closes the stream and its peer, leaving nothing."""
        before = own_readers_writers(reactor)
        async with serving(echo_factory()) as port:
            async with connected(port) as stream:
                stream.write(b"x")
            server = port.server_protocols
            self.assertEqual(server, [])
        self.assertTrue(stream.at_eof() or stream._ended is not None)
        self.assertEqual(own_readers_writers(reactor), before)

    async def test_body_exception_wins(self) -> None:
        """A body's exception goes through a stream scope unchanged."""
        with self.assertRaises(ZeroDivisionError):
            async with serving() as port, connected(port):
                raise ZeroDivisionError


class RejectedStreamTests(TestCase):
    async def test_rejected_stream_client(self) -> None:
        """A stream client turned away by the server fails with ConnectionRejected."""
        from cleanconn import ConnectionRejected

        class Refuses(Factory):
            def buildProtocol(self, addr: Any) -> None:
                return None

        async with serving(Refuses()) as port:
            with self.assertRaises(ConnectionRejected):
                async with connected(port):
                    self.fail("the block ran")


class StreamTransportTests(TestCase):
    async def _echo_over(self, **where: Any) -> None:
        async with serving(**where) as port, connected(port) as client:
            server = await port.accept()
            client.write(b"ping\n")
            line = await server.readline()
            server.write(line.upper())
            self.assertEqual(await client.readline(), b"PING\n")

    async def test_ipv6(self) -> None:
        """Streams work over IPv6 loopback."""
        await self._echo_over(interface="::1")

    if not has_ipv6():
        test_ipv6.skip = "no IPv6 loopback"

    async def test_unix(self) -> None:
        """Streams work over a UNIX socket."""
        await self._echo_over(unix=True)

    async def test_tls(self) -> None:
        """Streams work over TLS, once the handshake completed."""
        await self._echo_over(tls=True)

    async def test_endpoint_client(self) -> None:
        """A stream client connects through a client endpoint."""
        async with serving(Factory.forProtocol(Upper)) as port:
            endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
            async with connected(endpoint) as stream:
                stream.write(b"via endpoint\r\n")
                self.assertEqual(await stream.readline(), b"VIA ENDPOINT\r\n")

    async def test_endpoint_string_server(self) -> None:
        """A stream server listens on an endpoint string."""
        async with serving(None, "tcp:0:interface=127.0.0.1") as port:
            async with connected(port) as client:
                server = await port.accept()
                client.write(b"x")
                self.assertEqual(await server.readexactly(1), b"x")

    async def test_close_write_over_tls_is_refused(self) -> None:
        """close_write() over TLS raises TypeError: Twisted's TLS cannot half-close."""
        async with serving(tls=True) as port, connected(port) as client:
            with self.assertRaises(TypeError) as caught:
                client.close_write()
        tls = type(client.transport).__name__  # BufferingTLSTransport, in Twisted 26
        self.assertEqual(
            str(caught.exception),
            f"close_write(): this stream's transport ({tls}) cannot close only its "
            "writing side (TLS cannot, in Twisted); close() the stream instead, "
            "or end the data in a way the peer recognises.",
        )


class AcceptTests(TestCase):
    async def test_accept_gives_server_stream(self) -> None:
        """accept() on a stream port returns the server side's Stream."""
        async with serving() as port, connected(port, CountingFactory(Echo)) as client:
            server = await port.accept()
            self.assertIsInstance(server, Stream)
            server.write(b"hi")
            self.assertEqual(await client.received(2), b"hi")

    async def test_accept_gives_factory_protocol(self) -> None:
        """accept() on a port with a factory returns the protocol it built."""
        async with serving(echo_factory()) as port, connected(port) as client:
            server = await port.accept()
            self.assertIs(server, port.server_protocol(client))

    async def test_accept_waits_for_the_next_connection(self) -> None:
        """accept() called first fires when a client connects."""
        async with serving() as port:
            accepting = port.accept()
            self.assertFalse(accepting.called)
            async with connected(port):
                self.assertIsInstance(await accepting, Stream)

    async def test_accept_in_order_each_once(self) -> None:
        """Connections are accepted in order, each once."""
        async with serving() as port:
            async with connected(port) as first, connected(port) as second:
                one, two = await port.accept(), await port.accept()
                first.write(b"1")
                second.write(b"2")
                self.assertEqual(
                    (await one.readexactly(1), await two.readexactly(1)), (b"1", b"2")
                )

    async def test_closed_stream_stays_in_line(self) -> None:
        """A stream whose connection is gone is still accepted, at its end."""
        async with serving() as port:
            async with connected(port) as client:
                server = port.server_protocol(client)
            accepted = await port.accept()
            self.assertIs(accepted, server)
            self.assertTrue(accepted.at_eof())

    async def test_lost_factory_protocol_leaves_the_line(self) -> None:
        """A factory's protocol whose connection is gone is not accepted later."""
        async with serving(echo_factory()) as port:
            async with connected(port):
                pass
            async with connected(port) as second:
                self.assertIs(await port.accept(), port.server_protocol(second))

    async def test_accept_timeout(self) -> None:
        """accept(timeout=) with no client raises WaitTimeout and leaves no timer."""
        async with serving() as port:
            with self.assertRaises(WaitTimeout) as caught:
                await port.accept(timeout=0.05)
            self.assertIsNone(caught.exception.buffered)
            self.assertIn("accept()", str(caught.exception))
            self.assertIn("No client connected", str(caught.exception))
            async with connected(port):
                self.assertIsInstance(await port.accept(), Stream)

    async def test_accept_timeout_after_a_connection(self) -> None:
        """accept(timeout=) that gets a connection in time leaves no timer."""
        from cleanconn import clean_reactor

        async with clean_reactor():
            async with serving() as port:
                accepting = port.accept(timeout=60)
                async with connected(port):
                    self.assertIsInstance(await accepting, Stream)

    async def test_two_accepts_waiting(self) -> None:
        """Two accept() waiting get the next two connections, in order."""
        async with serving() as port:
            first, second = port.accept(), port.accept()
            async with connected(port) as one:
                self.assertIs(await first, port.server_protocol(one))
                async with connected(port) as two:
                    self.assertIs(await second, port.server_protocol(two))

    async def test_waiting_accept_repr(self) -> None:
        """A waiting accept()'s repr says no connection was accepted yet."""
        async with serving() as port:
            waiting = port.accept()
            self.assertIn("no connection accepted yet", repr(waiting))
            waiting.cancel()
            self.failureResultOf(waiting, defer.CancelledError)

    async def test_stop_listening_again(self) -> None:
        """stopListening() once the port stopped returns at once."""
        async with serving() as port:
            await port.stopListening()
            self.assertIsNone(self.successResultOf(port.stopListening()))

    async def test_accept_after_the_scope(self) -> None:
        """accept() after the serving() block raises ScopeClosed."""
        from cleanconn import ScopeClosed

        async with serving() as port:
            pass
        with self.assertRaises(ScopeClosed) as caught:
            port.accept()
        self.assertIn("accept()", str(caught.exception))

    async def test_waiting_accept_fails_at_exit(self) -> None:
        """An accept() still waiting when the block ends fails with ScopeClosed."""
        from cleanconn import ScopeClosed

        async with serving() as port:
            waiting = port.accept()
        self.failureResultOf(waiting, ScopeClosed)

    async def test_accept_after_stop_listening(self) -> None:
        """accept() once the port stopped listening raises ScopeClosed saying so."""
        from cleanconn import ScopeClosed

        async with serving() as port:
            await port.stopListening()
            with self.assertRaises(ScopeClosed) as caught:
                port.accept()
        self.assertIn("stopped listening", str(caught.exception))

    async def test_waiting_accept_fails_at_stop_listening(self) -> None:
        """An accept() waiting when stopListening() is called fails at once."""
        from cleanconn import ScopeClosed

        async with serving() as port:
            waiting = port.accept()
            await port.stopListening()
            self.failureResultOf(waiting, ScopeClosed)

    async def test_accepted_before_stop_still_given(self) -> None:
        """A connection accepted before stopListening() is still accepted."""
        async with serving() as port, connected(port):
            await port.stopListening()
            self.assertIsInstance(await port.accept(), Stream)

    async def test_cancelled_accept_gives_way(self) -> None:
        """A cancelled accept() does not take the next connection."""
        async with serving() as port:
            first = port.accept()
            first.cancel()
            self.failureResultOf(first, defer.CancelledError)
            async with connected(port):
                self.assertIsInstance(await port.accept(), Stream)

    async def test_stream_server_with_raw_socket_client(self) -> None:
        """A stream server reads what a plain socket client sent (not Twisted's)."""
        import socket

        async with serving() as port:
            sock = socket.create_connection(("127.0.0.1", port.getHost().port))
            try:
                sock.sendall(b"from a socket\n")
                server = await port.accept()
                self.assertEqual(await server.readline(), b"from a socket\n")
            finally:
                sock.close()


class PlayingTheServerTests(TestCase):
    async def test_treq_request(self) -> None:
        """A stream server reads treq's request line and answers it; nothing is left."""
        import treq

        from cleanconn import base_url

        async with serving() as port:
            request = treq.get(base_url(port) + "path?q=1")  # treq's global pool
            server = await port.accept()
            self.assertEqual(await server.readline(), b"GET /path?q=1 HTTP/1.1\r\n")
            await server.readuntil(b"\r\n\r\n")
            server.write(
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
            )
            server.close()
            response = await request
            self.assertEqual(await response.content(), b"ok")
