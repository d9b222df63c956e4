"""http_client() and base_url(): treq against a real twisted.web Site."""

from __future__ import annotations

import time
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.error import ConnectingCancelledError
from twisted.internet.protocol import Factory
from twisted.python.failure import Failure
from twisted.web.client import ResponseNeverReceived
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from cleanconn import (
    CleanupTimeout,
    ScopeClosed,
    base_url,
    clean_reactor,
    http_client,
    serving,
)
from cleanconn._teardown import ABORT_GRACE

from ._helpers import MARGIN, Paused, TestCase, own_readers_writers, turn

BIG = 4 * 1024 * 1024


class Text(Resource):
    """Answers GET with ``size`` bytes."""

    isLeaf = True

    def __init__(self, size: int = 5) -> None:
        super().__init__()
        self.size = size

    def render_GET(self, request: Request) -> bytes:
        return b"x" * self.size


class Never(Resource):
    """A handler that never finishes; ``lost`` fires when its request is cut."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.started: defer.Deferred[None] = defer.Deferred()
        self.lost: defer.Deferred[None] = defer.Deferred()

    def render_GET(self, request: Request) -> object:
        request.notifyFinish().addErrback(self._lost)
        self.started.callback(None)
        return NOT_DONE_YET

    def _lost(self, reason: Failure) -> None:
        self.lost.callback(None)


class CountingSite(Site):
    """A Site that counts the connections it accepted."""

    connections = 0

    def buildProtocol(self, addr: Any) -> Any:
        self.connections += 1
        return super().buildProtocol(addr)


def site(**children: Resource) -> CountingSite:
    root = Resource()
    for name, child in children.items():
        root.putChild(name.encode("ascii"), child)
    return CountingSite(root)


class BaseURLTests(TestCase):
    async def test_ipv4(self) -> None:
        """An IPv4 port's URL is http://127.0.0.1:PORT/."""
        async with serving(site()) as port:
            number = port.getHost().port
            self.assertEqual(base_url(port), f"http://127.0.0.1:{number}/")

    async def test_ipv6_in_brackets(self) -> None:
        """An IPv6 port's URL has its address in brackets."""
        async with serving(site(), interface="::1") as port:
            number = port.getHost().port
            self.assertEqual(base_url(port), f"http://[::1]:{number}/")

    async def test_every_interface_means_loopback(self) -> None:
        """A port on 0.0.0.0 is reached on 127.0.0.1."""
        async with serving(site(), interface="0.0.0.0") as port:
            number = port.getHost().port
            self.assertEqual(base_url(port), f"http://127.0.0.1:{number}/")

    async def test_unix_socket_has_no_url(self) -> None:
        """A UNIX socket port has no http URL: TypeError says so."""
        async with serving(site(), unix=True) as port:
            with self.assertRaises(TypeError) as caught:
                base_url(port)
        self.assertIn("does not listen on TCP", str(caught.exception))

    async def test_tls_port_is_https(self) -> None:
        """A TLS port's base URL is https."""
        async with serving(site(), tls=True) as port:
            number = port.getHost().port
            self.assertEqual(base_url(port), f"https://127.0.0.1:{number}/")


class HTTPSTests(TestCase):
    async def test_https_request_verified(self) -> None:
        """http_client(port) speaks https to a TLS port, trusting its CA only."""
        async with serving(site(hello=Text()), tls=True) as port:
            async with http_client(port) as client:
                response = await client.get(base_url(port) + "hello")
                self.assertEqual(await response.content(), b"xxxxx")

    async def test_https_over_ipv6(self) -> None:
        """https to [::1] verifies the certificate's ::1 address."""
        async with serving(site(hello=Text()), interface="::1", tls=True) as port:
            async with http_client(port) as client:
                response = await client.get(base_url(port) + "hello")
                self.assertEqual(response.code, 200)
                await response.content()

    async def test_https_keep_alive_both_sides_lost(self) -> None:
        """Over https, requests share a connection and both sides close at exit."""
        async with serving(site(hello=Text()), tls=True) as port:
            async with http_client(port) as client:
                for _ in range(5):
                    response = await client.get(base_url(port) + "hello")
                    await response.content()
                self.assertEqual(len(port.server_protocols), 1)
            self.assertEqual(port.server_protocols, [])

    async def test_https_policy_for_treq(self) -> None:
        """The CA's https_policy() lets treq's own Agent verify a TLS port."""
        from treq.client import HTTPClient
        from twisted.web.client import Agent, HTTPConnectionPool

        async with serving(site(hello=Text()), tls=True) as port:
            pool = HTTPConnectionPool(reactor, persistent=False)
            agent = Agent(reactor, contextFactory=port.tls.https_policy(), pool=pool)
            response = await HTTPClient(agent).get(base_url(port) + "hello")
            self.assertEqual(await response.content(), b"xxxxx")
            await pool.closeCachedConnections()

    async def test_https_without_the_port_is_refused(self) -> None:
        """An https URL to a port not given to http_client() fails, saying why."""
        async with serving(site(hello=Text()), tls=True) as port:
            async with http_client() as client:
                with self.assertRaises(Exception) as caught:
                    await client.get(base_url(port) + "hello")
        self.assertIn("Pass the port", str(caught.exception))


class HTTPClientTests(TestCase):
    async def test_ipv6_literal_request(self) -> None:
        """The client requests an IPv6-literal URL (treq alone cannot)."""
        async with serving(site(hello=Text()), interface="::1") as port:
            async with http_client(port) as client:
                response = await client.get(base_url(port) + "hello")
                self.assertEqual(await response.content(), b"xxxxx")

    async def test_request(self) -> None:
        """A GET made in the block gets the Site's answer."""
        async with serving(site(hello=Text())) as port:
            async with http_client(port) as client:
                response = await client.get(base_url(port) + "hello")
                self.assertEqual(response.code, 200)
                self.assertEqual(await response.content(), b"xxxxx")

    async def test_host_name(self) -> None:
        """A URL with a host name (localhost) is resolved, and leaves nothing."""
        async with serving(site(hello=Text())) as port:
            async with http_client(port) as client:
                url = f"http://localhost:{port.getHost().port}/hello"
                response = await client.get(url)
                self.assertEqual(await response.content(), b"xxxxx")
            self.assertEqual(port.server_protocols, [])

    async def test_idle_connection_closed_on_both_sides(self) -> None:
        """A keep-alive connection idle in the pool is closed, server side too."""
        async with serving(site(hello=Text())) as port:
            async with http_client(port) as client:
                response = await client.get(base_url(port) + "hello")
                await response.content()
                self.assertEqual(len(port.server_protocols), 1)
            self.assertEqual(port.server_protocols, [])

    async def test_unread_body(self) -> None:
        """A response whose body is never read does not keep its connection."""
        async with serving(site(big=Text(BIG))) as port:
            async with http_client(port) as client:
                response = await client.get(base_url(port) + "big")
                self.assertEqual(response.code, 200)
            self.assertEqual(port.server_protocols, [])

    async def test_request_in_flight_fails(self) -> None:
        """A request still in flight at the exit fails; nothing waits for it."""
        never = Never()
        async with serving(site(never=never)) as port:
            async with http_client(port) as client:
                request = client.get(base_url(port) + "never")
                await never.started
            self.assertEqual(port.server_protocols, [])
        with self.assertRaises(ResponseNeverReceived):
            await request

    async def test_handler_never_finishes(self) -> None:
        """A handler that never finishes is cut off at once, not timed out."""
        never = Never()
        async with serving(site(never=never)) as port:
            async with http_client(port) as client:
                request = client.get(base_url(port) + "never")
                await never.started
            # No CleanupTimeout was raised: the close was graceful.
            self.assertTrue(never.lost.called)
        request.addErrback(lambda _: None)

    async def test_connection_being_made_is_cancelled(self) -> None:
        """A request whose connection is still being made is cancelled."""
        async with serving(site(hello=Text())) as port:
            async with http_client(port) as client:
                request = client.get(base_url(port) + "hello")
        with self.assertRaises(ConnectingCancelledError):
            await request

    async def test_server_that_stops_reading(self) -> None:
        """An upload the server stops reading is aborted after timeout."""
        async with serving(Factory.forProtocol(Paused)) as port:
            started = time.monotonic()
            with self.assertRaises(CleanupTimeout) as caught:
                async with http_client(timeout=0.5) as client:
                    upload = client.post(base_url(port), data=b"x" * 4 * BIG)
                    # Turns, not an event: the upload must have begun, and
                    # nothing marks that; the server side appears just after.
                    while not port.server_protocols:
                        await turn()
            elapsed = time.monotonic() - started
        self.assertLess(elapsed, 0.5 + ABORT_GRACE + MARGIN)
        [report] = caught.exception.aborted
        self.assertEqual(report.side, "client")
        self.assertTrue(report.unsent)
        upload.addErrback(lambda _: None)

    async def test_body_exception_wins_over_cleanup_timeout(self) -> None:
        """The body's exception goes on when the exit also timed out: the
        CleanupTimeout is attached to it, not raised instead."""
        boom = RuntimeError("boom")
        async with serving(Factory.forProtocol(Paused)) as port:
            with self.assertRaises(RuntimeError) as caught:
                async with http_client(timeout=0.5) as client:
                    upload = client.post(base_url(port), data=b"x" * 4 * BIG)
                    while not port.server_protocols:  # the upload has begun
                        await turn()
                    raise boom
        upload.addErrback(lambda _: None)
        self.assertIs(caught.exception, boom)
        (cleanup,) = boom.cleanconn_cleanup_errors
        self.assertIsInstance(cleanup, CleanupTimeout)
        [report] = cleanup.aborted
        self.assertEqual(report.side, "client")

    async def test_keep_alive_reuses_one_connection(self) -> None:
        """200 requests in a row go over one keep-alive connection."""
        server = site(hello=Text())
        async with serving(server) as port:
            async with http_client(port) as client:
                for _ in range(200):
                    response = await client.get(base_url(port) + "hello")
                    self.assertEqual(await response.content(), b"xxxxx")
        self.assertEqual(server.connections, 1)

    async def test_pool_timer_cancelled(self) -> None:
        """The pool's timer for an idle connection is cancelled at the exit."""
        async with serving(site(hello=Text())) as port:
            async with http_client(port) as client:
                response = await client.get(base_url(port) + "hello")
                await response.content()
                self.assertTrue(_pool_timers())
            self.assertFalse(_pool_timers())

    async def test_reactor_clean(self) -> None:
        """Nothing of the scopes is left: no selectable, no DelayedCall."""
        never = Never()
        await turn()  # trial's own timer for this test now exists
        before = (own_readers_writers(reactor), self.timers())
        async with clean_reactor():
            async with serving(site(big=Text(BIG), never=never)) as port:
                async with http_client(port) as client:
                    url = base_url(port)
                    await (await client.get(url + "big")).content()
                    await client.get(url + "big")
                    request = client.get(url + "never")
                    await never.started
        request.addErrback(lambda _: None)
        self.assertEqual(own_readers_writers(reactor), before[0])
        self.assertEqual(self.timers(), before[1])

    async def test_no_new_connection_after_exit(self) -> None:
        """A request made after the block fails with ScopeClosed."""
        async with serving(site(hello=Text())) as port:
            async with http_client(port) as client:
                pass
            with self.assertRaises(ScopeClosed):
                await client.get(base_url(port) + "hello")

    async def test_body_exception_wins(self) -> None:
        """The block's exception propagates; the connection is still closed."""
        async with serving(site(hello=Text())) as port:
            with self.assertRaises(ZeroDivisionError):
                async with http_client(port) as client:
                    await (await client.get(base_url(port) + "hello")).content()
                    1 / 0  # noqa: B018
            self.assertEqual(port.server_protocols, [])

    async def test_request_timeout_uses_the_scope_reactor(self) -> None:
        """treq's timeout= is timed by the scope's reactor, not the global one."""
        clock = _RecordingReactor()
        never = Never()
        async with serving(site(never=never)) as port:
            async with http_client(port, reactor=clock) as client:  # type: ignore[arg-type]
                request = client.get(base_url(port) + "never", timeout=60)
                await never.started
                self.assertIn(60, clock.delays)
        request.addErrback(lambda _: None)

    async def test_url_as_bytes_or_hyperlink(self) -> None:
        """An IPv6-literal URL given as bytes, EncodedURL or DecodedURL is
        requested too."""
        from hyperlink import DecodedURL, EncodedURL

        async with serving(site(hello=Text()), interface="::1") as port:
            async with http_client(port) as client:
                url = base_url(port) + "hello"
                for given in (
                    url.encode("ascii"),
                    EncodedURL.from_text(url),
                    DecodedURL.from_text(url),
                ):
                    response = await client.get(given)
                    self.assertEqual(await response.content(), b"xxxxx")

    async def test_scheme_not_http(self) -> None:
        """A URL that is neither http nor https fails, naming its scheme."""
        from twisted.web.error import SchemeNotSupported

        async with http_client() as client:
            with self.assertRaises(SchemeNotSupported) as caught:
                await client.get("ftp://127.0.0.1:21/")
        self.assertIn("speaks http and https, not b'ftp'", str(caught.exception))

    async def test_each_tls_port_its_own_ca(self) -> None:
        """With two TLS ports, each URL is verified against its own port's CA."""
        async with serving(site(hello=Text(1)), tls=True) as one:
            async with serving(site(hello=Text(2)), tls=True) as two:
                async with http_client(one, two) as client:
                    for port, body in ((two, b"xx"), (one, b"x")):
                        response = await client.get(base_url(port) + "hello")
                        self.assertEqual(await response.content(), body)

    async def test_server_side_of_the_second_port(self) -> None:
        """With two ports, the server side a request reached is that of the
        port it went to, and the exit waits for it."""
        async with serving(site(hello=Text())) as one:
            async with serving(site(hello=Text())) as two:
                async with http_client(one, two) as client:
                    response = await client.get(base_url(two) + "hello")
                    await response.content()
                    self.assertEqual(len(two.server_protocols), 1)
                self.assertEqual(two.server_protocols, [])

    async def test_server_not_given(self) -> None:
        """A request to a server that was not given is waited for on the
        client side; that server's own scope closes its side."""
        async with serving(site(hello=Text())) as given:
            async with serving(site(hello=Text())) as other:
                async with http_client(given) as client:
                    response = await client.get(base_url(other) + "hello")
                    self.assertEqual(await response.content(), b"xxxxx")
                self.assertEqual(len(other.server_protocols), 1)

    async def test_server_side_accepted_late(self) -> None:
        """A server side the port accepts only after the client connected is
        still found, and the exit waits for it."""
        async with serving(site(hello=Text())) as port:
            async with http_client(port) as client:
                port._port.stopReading()  # fault injection: hold every accept
                request = client.get(base_url(port) + "hello")
                while not _client_connected_to(port):  # a turn or two
                    await turn()
                port._port.startReading()
                response = await request
                self.assertEqual(await response.content(), b"xxxxx")
            self.assertEqual(port.server_protocols, [])

    async def test_server_side_never_accepted(self) -> None:
        """A connection whose server side is not accepted by the exit: the
        client side is closed and nothing waits for the server side."""
        async with serving(site(hello=Text())) as port:
            port._port.stopReading()  # fault injection: hold every accept
            async with http_client(port) as client:
                request = client.get(base_url(port) + "hello")
                while not _client_connected_to(port):  # a turn or two
                    await turn()
            self.failureResultOf(request)  # its connection was closed
            self.assertFalse(_client_connected_to(port))
            port._port.startReading()

    async def test_port_of_an_ended_serving_block(self) -> None:
        """A port whose serving() block ended is a ValueError at entry."""
        async with serving(site(hello=Text())) as port:
            pass
        with self.assertRaises(ValueError) as caught:
            async with http_client(port):
                self.fail("the body ran")
        self.assertIn("enter http_client() inside the", str(caught.exception))

    def test_positional_arguments_are_ports(self) -> None:
        """Something other than a serving() port as a positional is a TypeError."""
        with self.assertRaises(TypeError):
            http_client("http://127.0.0.1:80/")  # type: ignore[arg-type]


class _RecordingReactor:
    """The global reactor, noting the delay of each callLater."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def callLater(self, delay: float, *args: Any, **kwargs: Any) -> Any:
        self.delays.append(delay)
        return reactor.callLater(delay, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(reactor, name)


def _pool_timers() -> list[Any]:
    return [
        call
        for call in reactor.getDelayedCalls()
        if "_removeConnection" in repr(call.func)
    ]


def _client_connected_to(port: Any) -> bool:
    """Whether a TCP client on the reactor has connected to ``port`` (the
    kernel completes a connect that the port has not accepted yet)."""
    from twisted.internet import tcp

    number = port.getHost().port
    return any(
        isinstance(s, tcp.Client) and s.connected and s.getPeer().port == number
        for s in reactor.getReaders()
    )
