"""
Streams as a trial test module: ``trial examples/test_streams.py``.

With no factory, ``connected()`` gives the block a ``cleanconn.Stream`` and
``serving()`` serves them, so a test can talk to a server, or play the
server for a client, without writing a protocol of its own:

- ``NotesTests`` tests a server (``Notes``, below) through a stream client;
- ``TreqTests`` tests a client (treq) against a stream server that the test
  scripts byte by byte.
"""

from __future__ import annotations

import struct

import treq
from twisted.internet import reactor
from twisted.internet.protocol import Factory, connectionDone
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from twisted.web.client import HTTPConnectionPool, ResponseFailed

from cleanconn import TestCase, WaitTimeout, base_url, connected, lost, serving


class Notes(LineReceiver):
    """
    The server under test, a line protocol that keeps notes:

    - ``ADD <text>`` keeps a note and answers ``OK <number of notes>``;
    - ``DUMP`` answers with every note, one a line, as one message: its
      length (4 bytes, big-endian), then the notes;
    - ``QUIT`` answers ``BYE`` and closes the connection.
    """

    def __init__(self) -> None:
        self.notes: list[bytes] = []
        self.closed = False

    def lineReceived(self, line: bytes) -> None:
        command, _, text = line.partition(b" ")
        if command == b"ADD":
            self.notes.append(text)
            self.sendLine(b"OK %d" % len(self.notes))
        elif command == b"DUMP":
            dump = b"".join(note + b"\n" for note in self.notes)
            self.transport.write(struct.pack("!I", len(dump)) + dump)
        elif command == b"QUIT":
            self.sendLine(b"BYE")
            self.transport.loseConnection()
        else:
            self.sendLine(b"ERR unknown command")

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.closed = True


class NotesTests(TestCase):
    timeout = 10  # a deadline for each test: a read that never completes

    async def test_answers_each_line(self) -> None:
        """Each command line gets its answer line, in order."""
        async with serving(Factory.forProtocol(Notes)) as port:
            async with connected(port) as stream:
                stream.write(b"ADD milk\r\nADD eggs\r\nSING\r\n")
                self.assertEqual(await stream.readline(), b"OK 1\r\n")
                self.assertEqual(await stream.readline(), b"OK 2\r\n")
                self.assertEqual(await stream.readline(), b"ERR unknown command\r\n")

    async def test_dump_is_length_prefixed(self) -> None:
        """DUMP sends a 4-byte length, then exactly that many bytes of notes."""
        async with serving(Factory.forProtocol(Notes)) as port:
            async with connected(port) as stream:
                stream.write(b"ADD milk\r\nADD eggs\r\nDUMP\r\n")
                await stream.readline()  # OK 1
                await stream.readline()  # OK 2
                (size,) = struct.unpack("!I", await stream.readexactly(4))
                self.assertEqual(await stream.readexactly(size), b"milk\neggs\n")

    async def test_quit_closes_the_connection(self) -> None:
        """After QUIT the server sends BYE, then the end of the stream."""
        async with serving(Factory.forProtocol(Notes)) as port:
            async with connected(port) as stream:
                stream.write(b"QUIT\r\n")
                self.assertEqual(await stream.read(), b"BYE\r\n")
                self.assertTrue(stream.at_eof())

    async def test_answers_only_whole_lines(self) -> None:
        """Half a line gets no answer; the rest of it gets one."""
        async with serving(Factory.forProtocol(Notes)) as port:
            async with connected(port) as stream:
                stream.write(b"ADD mi")
                with self.assertRaises(WaitTimeout):
                    await stream.readline(timeout=0.2)
                stream.write(b"lk\r\n")
                self.assertEqual(await stream.readline(), b"OK 1\r\n")

    async def test_server_sees_the_client_leave(self) -> None:
        """When the client closes, the server side runs connectionLost."""
        async with serving(Factory.forProtocol(Notes)) as port:
            async with connected(port) as stream:
                server = port.server_protocol(stream)
                stream.write(b"ADD milk\r\n")
                self.assertEqual(await stream.readline(), b"OK 1\r\n")
                stream.close()
                await lost(server)
                self.assertTrue(server.closed)
                self.assertEqual(server.notes, [b"milk"])


class TreqTests(TestCase):
    timeout = 10

    async def test_get(self) -> None:
        """treq sends a GET asking to close, reads the reply, then closes its end."""
        pool = HTTPConnectionPool(reactor, persistent=False)
        async with serving() as port:
            request = treq.get(base_url(port) + "hello", pool=pool)
            server = await port.accept()
            self.assertEqual(await server.readline(), b"GET /hello HTTP/1.1\r\n")
            headers = await server.readuntil(b"\r\n\r\n")
            self.assertIn(b"Host: 127.0.0.1:%d\r\n" % port.getHost().port, headers)
            self.assertIn(b"Connection: close\r\n", headers)
            server.write(
                b"HTTP/1.1 200 OK\r\n"
                b"Content-Type: text/plain\r\n"
                b"Content-Length: 5\r\n"
                b"\r\n"
                b"hello"
            )
            response = await request
            self.assertEqual(response.code, 200)
            self.assertEqual(await response.text("utf-8"), "hello")
            # It asked for "Connection: close", so it closes its end now.
            self.assertEqual(await server.read(), b"")

    async def test_response_cut_short(self) -> None:
        """A body that ends before its Content-Length makes treq's read fail."""
        pool = HTTPConnectionPool(reactor, persistent=False)
        async with serving() as port:
            request = treq.get(base_url(port), pool=pool)
            server = await port.accept()
            await server.readuntil(b"\r\n\r\n")
            server.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf")
            server.close()
            response = await request
            with self.assertRaises(ResponseFailed):
                await response.content()
