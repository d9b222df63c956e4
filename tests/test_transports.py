"""IPv6, UNIX sockets, any endpoint and verified TLS, on real sockets."""

from __future__ import annotations

import os
import stat
import sys
import tempfile
import time
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.address import IPv6Address, UNIXAddress
from twisted.internet.endpoints import TCP4ClientEndpoint, wrapClientTLS
from twisted.internet.error import ConnectError, ConnectionRefusedError
from twisted.internet.interfaces import IFileDescriptorReceiver, IHandshakeListener
from twisted.internet.protocol import ClientFactory, Factory
from zope.interface import implementer

from cleanconn import (
    CleanupTimeout,
    ConnectionRejected,
    ConnectTimeout,
    ServingPort,
    ThrowawayCA,
    TLSUnavailable,
    connected,
    serving,
)

from ._helpers import (
    CountingFactory,
    Echo,
    Recorder,
    TestCase,
    client_factory,
    echo_factory,
)


def has_ipv6() -> bool:
    import socket

    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


async def echo_once(test: TestCase, proto: Any, data: bytes) -> None:
    proto.transport.write(data)
    test.assertEqual(await proto.received(len(data)), data)


async def many(test: TestCase, port: ServingPort, count: int) -> list[Any]:
    """Connect ``count`` clients at once; each echoes and checks its peer."""
    clients: list[Any] = []

    async def one(index: int) -> None:
        async with connected(port, client_factory()) as proto:
            clients.append(proto)
            data = b"<%d>" % index
            await echo_once(test, proto, data)
            await port.server_protocol(proto).received(len(data))
            test.assertEqual(port.server_protocol(proto).data, data)

    await defer.gatherResults(
        [defer.ensureDeferred(one(i)) for i in range(count)], consumeErrors=True
    )
    return clients


class Refuses(Factory):
    """A server factory that builds no protocol."""

    def buildProtocol(self, addr: Any) -> None:
        return None


class IPv6Tests(TestCase):
    if not has_ipv6():
        skip = "this machine has no IPv6 loopback"

    async def test_interface_keyword(self) -> None:
        """serving(interface="::1") listens on IPv6 loopback, and echoes."""
        async with serving(echo_factory(), interface="::1") as port:
            self.assertEqual((port.getHost().type, port.getHost().host), ("TCP", "::1"))
            async with connected(port, client_factory()) as proto:
                await echo_once(self, proto, b"six")
                self.assertEqual(proto.transport.getPeer().host, "::1")

    async def test_endpoint_string(self) -> None:
        """The escaped tcp6 endpoint string works and connects to ::1 itself."""
        async with serving(echo_factory(), r"tcp6:0:interface=\:\:1") as port:
            async with connected(port, client_factory()) as proto:
                await echo_once(self, proto, b"6")
                self.assertEqual(proto.transport.getPeer().host, "::1")

    async def test_both_sides_lost_at_exit(self) -> None:
        """Over IPv6 the exit waits for both connectionLost calls."""
        async with serving(echo_factory(), interface="::1") as port:
            async with connected(port, client_factory()) as proto:
                server = port.server_protocol(proto)
            self.assertEqual((proto.lost_count, server.lost_count), (1, 1))

    async def test_many_clients(self) -> None:
        """50 IPv6 clients at once are each matched to their own server side."""
        async with serving(echo_factory(), interface="::1") as port:
            clients = await many(self, port, 50)
        self.assertEqual({c.lost_count for c in clients}, {1})

    async def test_body_raises(self) -> None:
        """A body exception propagates unchanged over IPv6, all closed."""
        boom = RuntimeError("boom")
        with self.assertRaises(RuntimeError) as caught:
            async with serving(echo_factory(), interface="::1") as port:
                async with connected(port, client_factory()) as proto:
                    raise boom
        self.assertIs(caught.exception, boom)
        self.assertEqual(proto.lost_count, 1)

    async def test_refused(self) -> None:
        """Connecting to a stopped IPv6 port raises ConnectionRefusedError."""
        async with serving(echo_factory(), interface="::1") as port:
            await port.stopListening()
            with self.assertRaises(ConnectionRefusedError):
                async with connected(port, client_factory()):
                    self.fail("the body ran")

    async def test_rejection_names_the_client(self) -> None:
        """An IPv6 client a server factory built no protocol for is named by
        its IPv6 address in ConnectionRejected."""
        async with serving(Refuses(), interface="::1") as port:
            with self.assertRaises(ConnectionRejected) as caught:
                async with connected(port, client_factory()):
                    self.fail("the body ran")
        address = caught.exception.address
        self.assertIsInstance(address, IPv6Address)
        self.assertIn(f"[::1]:{address.port}", str(caught.exception))


@implementer(IFileDescriptorReceiver)
class DescriptorReceiver(Recorder):
    """A server that receives file descriptors; ``descriptor`` fires with
    the first one."""

    def __init__(self) -> None:
        super().__init__()
        self.descriptor: defer.Deferred[int] = defer.Deferred()

    def fileDescriptorReceived(self, descriptor: int) -> None:
        self.descriptor.callback(descriptor)


class UNIXTests(TestCase):
    async def test_file_descriptor_passed(self) -> None:
        """A server protocol that receives file descriptors gets one a client
        sent over the UNIX connection."""
        read_end, write_end = os.pipe()
        self.addCleanup(os.close, read_end)
        self.addCleanup(os.close, write_end)
        async with serving(CountingFactory(DescriptorReceiver), unix=True) as port:
            async with connected(port, client_factory()) as proto:
                proto.transport.sendFileDescriptor(write_end)
                proto.transport.write(b"x")  # a descriptor travels with data
                server = port.server_protocol(proto)
                received = await server.descriptor
                self.addCleanup(os.close, received)
                os.write(received, b"through it")
                self.assertEqual(os.read(read_end, 100), b"through it")

    async def test_rejection_names_the_client(self) -> None:
        """A UNIX client a server factory built no protocol for is named in
        ConnectionRejected by its autobound abstract name, as '@name'."""
        factory = client_factory()
        async with serving(Refuses(), unix=True) as port:
            with self.assertRaises(ConnectionRejected) as caught:
                async with connected(port, factory):
                    self.fail("the body ran")
        address = caught.exception.address
        self.assertIsInstance(address, UNIXAddress)
        self.assertIsInstance(address.name, bytes)
        self.assertTrue(address.name.startswith(b"\0"))  # Linux autobind
        name = "@" + address.name[1:].decode()
        self.assertIn(f"connection from {name!r}", str(caught.exception))
        self.assertNotIn("\\x00", str(caught.exception))  # not b'\\x00...'

    async def test_private_directory(self) -> None:
        """unix=True listens in a new directory of mode 0700."""
        async with serving(echo_factory(), unix=True) as port:
            path = port.getHost().name
            mode = stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode)
            self.assertEqual(mode, 0o700)
            self.assertTrue(stat.S_ISSOCK(os.stat(path).st_mode))

    async def test_deep_temporary_directory(self) -> None:
        """unix=True works when TMPDIR is too deep for a socket path."""
        deep = os.path.join(self.mktemp(), "d" * 60, "e" * 60)
        os.makedirs(deep)
        self.patch(tempfile, "tempdir", deep)
        async with serving(echo_factory(), unix=True) as port:
            async with connected(port, client_factory()) as client:
                client.transport.write(b"x")
                self.assertEqual(await client.received(1), b"x")
        self.assertFalse(os.fsencode(port.getHost().name).startswith(os.fsencode(deep)))

    async def test_directory_removed_at_exit(self) -> None:
        """The socket file and its private directory are gone after the exit."""
        async with serving(echo_factory(), unix=True) as port:
            path = port.getHost().name
        self.assertFalse(os.path.exists(os.path.dirname(path)))

    async def test_echo(self) -> None:
        """connected(port) reaches a UNIX port and echoes."""
        async with serving(echo_factory(), unix=True) as port:
            async with connected(port, client_factory()) as proto:
                await echo_once(self, proto, b"unix")

    async def test_both_sides_lost_at_exit(self) -> None:
        """Over UNIX sockets the exit waits for both connectionLost calls."""
        async with serving(echo_factory(), unix=True) as port:
            async with connected(port, client_factory()) as proto:
                server = port.server_protocol(proto)
            self.assertEqual((proto.lost_count, server.lost_count), (1, 1))

    async def test_many_clients(self) -> None:
        """50 UNIX clients at once are each matched to their own server side."""
        async with serving(echo_factory(), unix=True) as port:
            clients = await many(self, port, 50)
        self.assertEqual({c.lost_count for c in clients}, {1})

    async def test_matched_despite_a_raw_client(self) -> None:
        """A raw client connecting first does not shift who is whose peer."""
        server_factory = echo_factory()
        raw = Recorder()
        async with serving(server_factory, unix=True) as port:
            reactor.connectUNIX(port.getHost().name, _OneShot(raw))
            await server_factory.made()
            async with connected(port, client_factory()) as proto:
                self.assertIs(port.server_protocol(proto), server_factory.built[1])
        await raw.lost

    async def test_body_raises(self) -> None:
        """A body exception propagates unchanged; the directory is still removed."""
        boom = RuntimeError("boom")
        with self.assertRaises(RuntimeError) as caught:
            async with serving(echo_factory(), unix=True) as port:
                path = port.getHost().name
                async with connected(port, client_factory()):
                    raise boom
        self.assertIs(caught.exception, boom)
        self.assertFalse(os.path.exists(os.path.dirname(path)))

    async def test_refused(self) -> None:
        """A stopped UNIX port fails connected() with Twisted's ConnectError."""
        async with serving(echo_factory(), unix=True) as port:
            await port.stopListening()
            with self.assertRaises(ConnectError):
                async with connected(port, client_factory()):
                    self.fail("the body ran")

    async def test_user_path(self) -> None:
        """unix="/some/path" listens there and the socket is removed at exit."""
        folder = tempfile.mkdtemp()
        self.addCleanup(os.rmdir, folder)
        path = os.path.join(folder, "server.sock")
        async with serving(echo_factory(), unix=path) as port:
            self.assertEqual(os.fsdecode(port.getHost().name), path)
            async with connected(port, client_factory()) as proto:
                await echo_once(self, proto, b"p")
        self.assertFalse(os.path.exists(path))


class UnboundUNIXTests(TestCase):
    """
    Where there is no autobind (every system but Linux), a UNIX client
    socket has no address, and server sides are matched to clients in
    accept order. Linux has it: these tests turn cleanconn's binding off.
    """

    def setUp(self) -> None:
        from cleanconn import _addresses

        self.patch(_addresses, "_autobind", lambda connector: None)

    async def test_echo(self) -> None:
        """An unbound client reaches its own server side, and echoes."""
        async with serving(echo_factory(), unix=True) as port:
            async with connected(port, client_factory()) as proto:
                self.assertFalse(proto.transport.socket.getsockname())
                await echo_once(self, proto, b"unbound")
                server = port.server_protocol(proto)
                self.assertEqual(await server.received(7), b"unbound")
            self.assertEqual((proto.lost_count, server.lost_count), (1, 1))

    async def test_many_clients(self) -> None:
        """50 unbound clients at once are each matched to their own server side."""
        async with serving(echo_factory(), unix=True) as port:
            clients = await many(self, port, 50)
        self.assertEqual({c.lost_count for c in clients}, {1})

    async def test_lost_server_side_not_matched(self) -> None:
        """A server side lost before a client started connecting is not
        that client's, though both have no address."""
        server_factory = echo_factory()
        raw = Recorder()
        async with serving(server_factory, unix=True) as port:
            reactor.connectUNIX(port.getHost().name, _OneShot(raw))
            await server_factory.made()
            raw.transport.loseConnection()
            await server_factory.built[0].lost
            async with connected(port, client_factory()) as proto:
                self.assertIs(port.server_protocol(proto), server_factory.built[1])
        await raw.lost

    async def test_tls(self) -> None:
        """Over TLS, an unbound client is matched once both handshakes are
        done, to the server side accepted before."""
        async with serving(echo_factory(), unix=True, tls=True) as port:
            async with connected(port, client_factory()) as proto:
                await echo_once(self, proto, b"tls")
                self.assertEqual(port.server_protocol(proto).data, b"tls")

    async def test_server_that_never_accepts(self) -> None:
        """If the server side never shows up, the unbound client's entry
        raises ConnectTimeout; the server side accepted late is closed."""
        server = echo_factory()
        async with serving(server, unix=True) as port:
            port._port.stopReading()  # fault injection: hold every accept
            with self.assertRaises(ConnectTimeout) as caught:
                async with connected(port, client_factory(), timeout=0.3):
                    self.fail("the body ran")
            self.assertEqual(
                caught.exception.waiting, "the server side ran connectionMade"
            )
            port._port.startReading()
            await server.made()
            await server.built[0].lost
        self.assertEqual(server.built[0].lost_count, 1)

    async def test_rejected(self) -> None:
        """A server factory that builds no protocol fails the entry with
        ConnectionRejected: the server closed the connection."""
        factory = client_factory()
        async with serving(Refuses(), unix=True) as port:
            with self.assertRaises(ConnectionRejected) as caught:
                async with connected(port, factory):
                    self.fail("the body ran")
        self.assertIn(
            "connected(): the connection was closed before", str(caught.exception)
        )  # an unbound client has no address to name
        self.assertIn("the server closed it", str(caught.exception))
        self.assertEqual(factory.built[0].lost_count, 1)


class EndpointTests(TestCase):
    async def test_underivable_address(self) -> None:
        """A port whose address has no client endpoint asks for one, by name."""
        async with serving(echo_factory()) as port:
            port._address = object()  # type: ignore[assignment]
            with self.assertRaises(TypeError) as caught:
                async with connected(port, client_factory()):
                    self.fail("the body ran")
            self.assertIn("pass a client endpoint", str(caught.exception))
            port._address = port._port.getHost()

    async def test_unix_endpoint_string(self) -> None:
        """A 'unix:' server endpoint string is served and reachable."""
        folder = tempfile.mkdtemp()
        self.addCleanup(os.rmdir, folder)
        path = os.path.join(folder, "s")
        async with serving(echo_factory(), f"unix:{path}") as port:
            async with connected(port, client_factory()) as proto:
                await echo_once(self, proto, b"u")


@implementer(IHandshakeListener)
class HandshakeRecorder(Recorder):
    """Records whether its TLS handshake completed."""

    handshakes = 0

    def handshakeCompleted(self) -> None:
        self.handshakes += 1


@implementer(IHandshakeListener)
class HandshakeEcho(Echo):
    handshakes = 0

    def handshakeCompleted(self) -> None:
        self.handshakes += 1


class TLSTests(TestCase):
    async def test_echo_verified(self) -> None:
        """tls=True serves TLS and connected() talks to it with verification on."""
        async with serving(echo_factory(), tls=True) as port:
            async with connected(port, client_factory()) as proto:
                await echo_once(self, proto, b"secret")
                self.assertIsNotNone(proto.transport.getPeerCertificate())

    async def test_handshake_done_on_both_sides_before_body(self) -> None:
        """The body starts after both sides' handshakeCompleted ran."""
        server_factory = Factory.forProtocol(HandshakeEcho)
        async with serving(server_factory, tls=True) as port:
            async with connected(port, Factory.forProtocol(HandshakeRecorder)) as c:
                self.assertEqual(c.handshakes, 1)
                self.assertEqual(port.server_protocol(c).handshakes, 1)

    async def test_other_ca_fails_on_entry(self) -> None:
        """A client trusting another CA fails when entering; the body never runs."""
        other = ThrowawayCA().client_options("127.0.0.1")
        factory = client_factory()
        async with serving(echo_factory(), tls=True) as port:
            with self.assertRaises(Exception) as caught:
                async with connected(port, factory, tls=other):
                    self.fail("the body ran")
        self.assertIn("certificate verify failed", str(caught.exception))
        self.assertEqual(factory.built[0].lost_count, 1)

    async def test_trust_usable_by_raw_clients(self) -> None:
        """port.tls gives a raw wrapClientTLS client exactly the trust it needs."""
        async with serving(echo_factory(), tls=True) as port:
            assert port.tls is not None
            endpoint = wrapClientTLS(
                port.tls.client_options("127.0.0.1"),
                TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port),
            )
            async with connected(endpoint, client_factory()) as proto:
                await echo_once(self, proto, b"raw")

    async def test_tls_option_on_an_endpoint(self) -> None:
        """connected(endpoint, tls=...) wraps any endpoint in verified TLS."""
        async with serving(echo_factory(), tls=True) as port:
            assert port.tls is not None
            endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
            options = port.tls.client_options("localhost")
            async with connected(endpoint, client_factory(), tls=options) as proto:
                await echo_once(self, proto, b"ep")

    async def test_both_sides_lost_at_exit(self) -> None:
        """Over TLS the exit waits for both connectionLost calls."""
        async with serving(echo_factory(), tls=True) as port:
            async with connected(port, client_factory()) as proto:
                server = port.server_protocol(proto)
            self.assertEqual((proto.lost_count, server.lost_count), (1, 1))

    async def test_many_clients(self) -> None:
        """20 TLS clients at once each echo through their own verified session."""
        async with serving(echo_factory(), tls=True) as port:
            clients = await many(self, port, 20)
        self.assertEqual({c.lost_count for c in clients}, {1})

    async def test_ipv6(self) -> None:
        """TLS over IPv6 verifies the certificate against ::1."""
        if not has_ipv6():
            raise self.skipTest("no IPv6 loopback")
        async with serving(echo_factory(), interface="::1", tls=True) as port:
            async with connected(port, client_factory()) as proto:
                await echo_once(self, proto, b"v6")

    async def test_unix(self) -> None:
        """TLS over a UNIX socket works too."""
        async with serving(echo_factory(), unix=True, tls=True) as port:
            async with connected(port, client_factory()) as proto:
                await echo_once(self, proto, b"u")

    async def test_body_raises(self) -> None:
        """A body exception over TLS propagates unchanged, all closed."""
        boom = RuntimeError("boom")
        with self.assertRaises(RuntimeError) as caught:
            async with serving(echo_factory(), tls=True) as port:
                async with connected(port, client_factory()) as proto:
                    raise boom
        self.assertIs(caught.exception, boom)
        self.assertEqual(proto.lost_count, 1)

    async def test_close_notify_to_a_peer_that_stops_reading(self) -> None:
        """TLS to a server that stopped reading is aborted at timeout, not hung."""
        server = CountingFactory(PausedAfterHandshake)
        async with serving(server, tls=True) as port:
            assert port.tls is not None
            trust = port.tls.client_options("127.0.0.1")
            # An endpoint, so that serving() does not close the server side:
            # the client's close_notify is what cannot get through.
            endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
            start = time.monotonic()
            with self.assertRaises(CleanupTimeout) as caught:
                factory = client_factory()
                async with connected(endpoint, factory, tls=trust, timeout=0.5) as c:
                    # The handshake is complete: the server has stopped reading.
                    c.transport.write(b"x" * (8 * 1024 * 1024))
            self.assertLess(time.monotonic() - start, 0.5 + 3)
        self.assertEqual(caught.exception.aborted[0].side, "client")
        self.assertEqual(server.built[0].lost_count, 1)

    async def test_missing_tls_dependencies(self) -> None:
        """Without pyOpenSSL, tls=True raises TLSUnavailable saying what to install."""
        # Fault injection: the dependency is installed here, so hide it.
        saved = sys.modules.pop("OpenSSL", None)

        def restore() -> None:
            del sys.modules["OpenSSL"]
            if saved is not None:
                sys.modules["OpenSSL"] = saved

        sys.modules["OpenSSL"] = None  # type: ignore[assignment]
        self.addCleanup(restore)
        with self.assertRaises(TLSUnavailable) as caught:
            serving(echo_factory(), tls=True)
        self.assertIn("cleanconn[tls]", str(caught.exception))

    async def test_write_files_on_request(self) -> None:
        """ThrowawayCA.write() writes the PEM files, the key private."""
        folder = self.mktemp()
        os.mkdir(folder)
        paths = ThrowawayCA().write(folder)
        self.assertEqual(stat.S_IMODE(os.stat(paths["key"]).st_mode), 0o600)
        self.assertIn(b"BEGIN CERTIFICATE", paths["ca"].read_bytes())


@implementer(IHandshakeListener)
class PausedAfterHandshake(Recorder):
    """A TLS server that stops reading once the handshake is done."""

    def handshakeCompleted(self) -> None:
        self.transport.pauseProducing()


class _OneShot(ClientFactory):
    def __init__(self, proto: Recorder) -> None:
        self.proto = proto

    def buildProtocol(self, addr: Any) -> Recorder:
        return self.proto
