"""
A hostile network as a trial test module: ``trial examples/test_proxy.py``.

Loopback delivers each write whole, at once, so a protocol that assumes one
message per ``dataReceived`` passes every loopback test. ``proxied()`` puts
a proxy in this process between the client and the server, with faults on
the way:

- ``FramingTests`` finds that bug in ``NaiveCounter`` with
  ``sweep_fragmentation()``, and shows ``WordCounter`` (a ``LineReceiver``)
  passing every chunking;
- ``FaultTests`` adds latency under a deadline, resets a connection, and
  takes the proxy down and up again.
"""

from __future__ import annotations

from twisted.internet.error import ConnectionLost, ConnectionRefusedError
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.basic import LineReceiver

from cleanconn import (
    DeadlineExceeded,
    FragmentationFailed,
    IncompleteReadError,
    Proxy,
    TestCase,
    connected,
    deadline,
    latency,
    proxied,
    reset_peer,
    serving,
    sweep_fragmentation,
)

SENTENCE = b"the quick brown fox jumps over the lazy dog"


class NaiveCounter(Protocol):
    """Answers each line with its number of words. The bug: it takes each
    ``dataReceived`` for one whole line."""

    def dataReceived(self, data: bytes) -> None:
        self.transport.write(b"%d\r\n" % len(data.split()))


class WordCounter(LineReceiver):
    """The same protocol, framed by ``LineReceiver``: it buffers bytes until
    a line is whole."""

    def lineReceived(self, line: bytes) -> None:
        self.sendLine(b"%d" % len(line.split()))


class FramingTests(TestCase):
    timeout = 20  # a deadline for each test

    async def count_sentence(self, target: Proxy) -> None:
        """The exchange under test: one line, and its answer."""
        async with connected(target) as stream:
            stream.write(SENTENCE + b"\r\n")
            self.assertEqual(await stream.readline(), b"9\r\n")

    async def test_naive_counter_passes_on_loopback(self) -> None:
        """Straight over loopback, the naive protocol looks correct."""
        async with serving(Factory.forProtocol(NaiveCounter)) as port:
            async with connected(port) as stream:
                stream.write(SENTENCE + b"\r\n")
                self.assertEqual(await stream.readline(), b"9\r\n")

    async def test_naive_counter_fails_when_cut(self) -> None:
        """The sweep fails the naive protocol under every chunking but whole."""
        async with serving(Factory.forProtocol(NaiveCounter)) as port:
            with self.assertRaises(FragmentationFailed) as caught:
                await sweep_fragmentation(port, self.count_sentence)
        failed = [chunking for chunking, _ in caught.exception.failures]
        self.assertEqual(failed, ["1 byte", "2 bytes", "3 bytes", "1 to 15 bytes"])

    async def test_word_counter_passes_every_chunking(self) -> None:
        """LineReceiver's buffering passes whole, 1, 2, 3 and random sizes."""
        async with serving(Factory.forProtocol(WordCounter)) as port:
            await sweep_fragmentation(port, self.count_sentence)


@deadline(1)
async def count_words(target: Proxy, line: bytes) -> bytes:
    """Ask through ``target`` for the words of ``line``, within a second."""
    async with connected(target) as stream:
        stream.write(line + b"\r\n")
        return await stream.readline()


class FaultTests(TestCase):
    timeout = 20

    async def test_latency_past_the_deadline(self) -> None:
        """0.1 s each way fits count_words' deadline; 0.6 s each way does not."""
        async with serving(Factory.forProtocol(WordCounter)) as port:
            async with proxied(port, faults=[latency(0.1)]) as proxy:
                self.assertEqual(await count_words(proxy, b"one two"), b"2\r\n")
                proxy.clear()
                proxy.add(latency(0.6))
                with self.assertRaises(DeadlineExceeded):
                    await count_words(proxy, b"one two")

    async def test_reset_reaches_the_client(self) -> None:
        """A reset after the answer's first byte ends the read with ConnectionLost."""
        async with serving(Factory.forProtocol(WordCounter)) as port:
            async with proxied(port, downstream=[reset_peer(after=1)]) as proxy:
                async with connected(proxy) as stream:
                    stream.write(b"one two\r\n")
                    with self.assertRaises(IncompleteReadError) as caught:
                        await stream.readuntil(b"\r\n")
        self.assertEqual(caught.exception.partial, b"2")
        self.assertIsInstance(caught.exception.reason, ConnectionLost)

    async def test_down_and_up(self) -> None:
        """While down, connecting is refused and open connections go on."""
        async with serving(Factory.forProtocol(WordCounter)) as port:
            async with proxied(port) as proxy:
                async with connected(proxy) as first:
                    await proxy.down()
                    with self.assertRaises(ConnectionRefusedError):
                        async with connected(proxy):
                            self.fail("connected to a proxy that is down")
                    first.write(b"still here\r\n")
                    self.assertEqual(await first.readline(), b"2\r\n")
                await proxy.up()
                self.assertEqual(await count_words(proxy, b"back"), b"1\r\n")
            self.assertEqual(proxy.connections, 2)
            self.assertEqual(proxy.upstream.bytes, len(b"still here\r\nback\r\n"))
            self.assertEqual(proxy.downstream.bytes, len(b"2\r\n1\r\n"))
