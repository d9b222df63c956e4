"""
``http_client()``: a treq client whose connections belong to a scope, and
``base_url()``: the URL of a serving port.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any

from hyperlink import DecodedURL, EncodedURL
from treq.client import HTTPClient
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.defer import CancelledError, Deferred, fail
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    wrapClientTLS,
)
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocol,
    IProtocolFactory,
    IStreamClientEndpoint,
)
from twisted.python.failure import Failure
from twisted.web.client import URI, Agent, HTTPConnectionPool
from twisted.web.error import SchemeNotSupported
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

from ._addresses import listens_at, reachable_host
from ._connections import ConnectionSet
from ._errors import ScopeClosed
from ._matching import ticket
from ._proxy import Proxy
from ._reactor import CleanconnReactor
from ._scope import DEFAULT_TIMEOUT, Scope
from ._serving import ServingPort, matcher_of
from ._teardown import Closing
from ._tracked import Tracked, tracking_factory


def base_url(port: IListeningPort | Proxy) -> str:
    """
    The base URL of a listening port, ending in ``/``.

    .. code-block:: python

        async with serving(Site(root)) as port, http_client(port) as client:
            response = await client.get(base_url(port) + "hello")

    IPv4 gives ``http://127.0.0.1:8080/``, IPv6 ``http://[::1]:8080/``, and
    a TLS port (``serving(..., tls=True)``) ``https://127.0.0.1:8080/``;
    :func:`http_client` given that port trusts exactly its CA. A port bound
    to every interface (``0.0.0.0`` or ``::``) is reached on the loopback
    address of its family, as :func:`~cleanconn.connected` does.

    :param port: a port yielded by :func:`~cleanconn.serving`, a
        :func:`~cleanconn.proxied` proxy, or any listening port on TCP.
    :raises TypeError: the port does not listen on TCP (a UNIX socket has no
        URL a client can use; pass its endpoint to the client instead).
    """
    scheme = "https" if getattr(port, "tls", None) is not None else "http"
    address = port.getHost()
    host = getattr(address, "host", None)
    number = getattr(address, "port", None)
    if getattr(address, "type", None) != "TCP" or not isinstance(host, str):
        raise TypeError(
            f"base_url(): {port!r} does not listen on TCP (its address is "
            f"{address!r}), so it has no http URL. Serve on TCP, or connect "
            "to it with an endpoint of your own."
        )
    host = reachable_host(host)
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{number}/"


class _IPLiteralURL(EncodedURL):
    """
    A URL whose host is an IPv6 literal: ``to_uri()`` leaves the host alone.

    hyperlink IDNA-encodes every host in ``to_uri()``, which fails for
    ``::1`` (hyperlink issues #68 and #188), so treq cannot request
    ``http://[::1]:PORT/`` by itself.
    """

    def to_uri(self) -> EncodedURL:
        host = self.host
        placeholder = self.replace(host="ip-literal.invalid")
        return EncodedURL.to_uri(placeholder).replace(host=host)


def _ip_literal_safe(url: Any) -> Any:
    """``url``, made requestable by treq if its host is an IPv6 literal."""
    if isinstance(url, DecodedURL):
        parsed = url.encoded_url
    elif isinstance(url, EncodedURL):
        parsed = url
    elif isinstance(url, str):
        parsed = EncodedURL.from_text(url)
    elif isinstance(url, bytes):
        parsed = EncodedURL.from_text(url.decode("ascii"))
    else:
        return url
    if not isIPv6Address(parsed.host):
        return url
    return _IPLiteralURL.from_text(parsed.to_text())


class _ScopedHTTPClient(HTTPClient):
    """
    treq's client, able to request IPv6 literal URLs such as base_url's,
    and timing requests (``timeout=``) with the scope's reactor.
    """

    def __init__(self, agent: Agent, scope: _HTTPClientScope) -> None:
        super().__init__(agent)
        self._scope_reactor = scope.reactor
        self._in_flight = scope.in_flight

    def request(self, method: str, url: Any, **kwargs: Any) -> Deferred[Any]:
        kwargs.setdefault("reactor", self._scope_reactor)
        # One more frame between the caller and treq's warnings.
        kwargs["_stacklevel"] = kwargs.get("_stacklevel", 2) + 1
        d = super().request(method, _ip_literal_safe(url), **kwargs)
        if not d.called:
            in_flight = self._in_flight
            in_flight[d] = None
            d.addBoth(_landed, in_flight, d)
        return d


def _landed(result: object, in_flight: dict[Deferred[Any], None], d: object) -> object:
    """A request has its response (or failure): it is no longer in flight."""
    in_flight.pop(d, None)  # type: ignore[call-overload]
    return result


def _quiet(d: Deferred[Any]) -> None:
    """
    Keep a failed request's failure from being logged as unhandled when it
    is collected, while it stays its result: awaiting it still raises.
    (Twisted logs a failure still pending when a Deferred is collected; the
    note of it lives in ``_debugInfo``, as in every Twisted since 8.)
    """
    info = getattr(d, "_debugInfo", None)
    if info is not None and getattr(info, "failResult", None) is not None:
        info.failResult = None


@implementer(IStreamClientEndpoint)
class _TrackingEndpoint:
    """Connects with ``endpoint``; every connection it makes is tracked."""

    def __init__(
        self, endpoint: IStreamClientEndpoint, scope: _HTTPClientScope
    ) -> None:
        self._endpoint = endpoint
        self._scope = scope

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:  # noqa: N803
        scope = self._scope
        if scope.closing:
            return fail(ScopeClosed(scope.name))
        since = ticket()
        factory = tracking_factory(protocolFactory, scope.conns, "client")
        d = self._endpoint.connect(factory)
        scope.connecting[d] = None

        def connected(conn: IProtocol) -> IProtocol:
            scope.connecting.pop(d, None)
            assert isinstance(conn, Tracked)
            scope.find_peer(conn, since)
            # The pool talks to its own protocol, not to the wrapper.
            wrapped: IProtocol = conn.wrapped
            return wrapped

        def failed(reason: Failure) -> Failure:
            scope.connecting.pop(d, None)
            return reason

        return d.addCallbacks(connected, failed)


@implementer(IAgentEndpointFactory)
class _EndpointFactory:
    """
    TCP endpoints for ``http`` URLs, IP literals connected directly; for
    ``https`` URLs, TLS verified against the CA of the TLS serving port
    at that address.
    """

    def __init__(self, reactor: CleanconnReactor, scope: _HTTPClientScope) -> None:
        self._reactor = reactor
        self._scope = scope

    def endpointForURI(self, uri: URI) -> IStreamClientEndpoint:
        if uri.scheme not in (b"http", b"https"):
            raise SchemeNotSupported(
                f"http_client() speaks http and https, not {uri.scheme!r}"
            )
        host = uri.host.decode("ascii")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        endpoint: IStreamClientEndpoint
        if isIPv6Address(host):
            endpoint = TCP6ClientEndpoint(self._reactor, host, uri.port)  # type: ignore[no-untyped-call]
        elif isIPAddress(host):
            endpoint = TCP4ClientEndpoint(self._reactor, host, uri.port)
        else:
            endpoint = HostnameEndpoint(self._reactor, uri.host, uri.port)
        if uri.scheme == b"https":
            endpoint = wrapClientTLS(self._trust(host, uri.port), endpoint)
        return _TrackingEndpoint(endpoint, self._scope)

    def _trust(self, host: str, number: int) -> Any:
        """Client TLS options trusting the CA of the TLS port at host:number."""
        for server in self._scope.servers:
            if server.tls is not None and listens_at(server.getHost(), host, number):
                return server.tls.client_options(host)
        raise SchemeNotSupported(
            f"http_client(): no TLS serving() port at {host}:{number} was "
            "given, so there is no CA to trust for this https URL. Pass the "
            "port: http_client(port). cleanconn never turns verification off."
        )


class _HTTPClientScope(Scope[HTTPClient]):
    """The ``http_client()`` scope: owns the pool and every connection."""

    name = "http_client()"

    def __init__(
        self,
        servers: tuple[ServingPort | Proxy, ...],
        reactor: CleanconnReactor | None,
        timeout: float,
    ) -> None:
        ports = tuple(s.port if type(s) is Proxy else s for s in servers)
        for server in ports:
            if not isinstance(server, ServingPort):
                raise TypeError(
                    "http_client() takes ports yielded by cleanconn.serving() "
                    f"as positional arguments, got {server!r}; pass reactor= "
                    "and timeout= by keyword."
                )
        super().__init__(reactor, timeout)
        self.servers: tuple[ServingPort, ...] = ports  # type: ignore[assignment]
        self.conns = ConnectionSet(on_lost=self._forget_peer)
        #: The server side of each connection, while either side is open.
        self.peers: dict[Tracked, Tracked] = {}
        #: Claims of server sides not accepted yet.
        self.claims: dict[Deferred[Tracked], None] = {}
        #: Connections being made.
        self.connecting: dict[Deferred[Any], None] = {}
        #: The exit has begun: no new connection is made.
        self.closing = False
        #: Requests made through the client that have no response yet.
        self.in_flight: dict[Deferred[Any], None] = {}
        #: Those still in flight when the exit began.
        self.let_go: list[Deferred[Any]] = []
        #: The scope's pool: persistent, so tests exercise keep-alive.
        self.pool = HTTPConnectionPool(self.reactor, persistent=True)  # type: ignore[no-untyped-call]
        agent = Agent.usingEndpointFactory(  # type: ignore[no-untyped-call]
            self.reactor, _EndpointFactory(self.reactor, self), pool=self.pool
        )
        self.client: HTTPClient = _ScopedHTTPClient(agent, self)

    # The server side of each connection -----------------------------------------

    def find_peer(self, conn: Tracked, since: int) -> None:
        """Claim the server side of ``conn`` if it is a ``servers`` port's."""
        if conn.lost:
            return
        server = self._server_of(conn)
        if server is None:
            return
        found = matcher_of(server).claim(conn, since)
        if isinstance(found, Tracked):
            self._add_peer(conn, found)
            return
        self.claims[found] = None

        def claimed(peer: Tracked) -> None:
            del self.claims[found]
            self._add_peer(conn, peer)

        def cancelled(reason: Failure) -> None:
            reason.trap(CancelledError)  # type: ignore[no-untyped-call]

        found.addCallbacks(claimed, cancelled)

    def _add_peer(self, conn: Tracked, peer: Tracked) -> None:
        self.peers[conn] = peer
        peer.when_lost(lambda _: self._forget_peer(conn))

    def _forget_peer(self, conn: Tracked) -> None:
        """Once both sides are lost, there is nothing left to wait for."""
        peer = self.peers.get(conn)
        if peer is not None and peer.lost and conn.lost:
            del self.peers[conn]

    def _server_of(self, conn: Tracked) -> ServingPort | None:
        """The serving port at the other end of ``conn``, if it is one."""
        if not self.servers:
            return None
        peer = conn.transport.getPeer()
        host = getattr(peer, "host", None)
        number = getattr(peer, "port", None)
        for server in self.servers:
            if listens_at(server.getHost(), host, number):
                return server
        return None

    # The scope ----------------------------------------------------------------

    def _enter(self) -> HTTPClient:
        for server in self.servers:
            if server.closed:
                raise ValueError(
                    f"http_client(): {server!r} belongs to a serving() scope "
                    "that has ended; enter http_client() inside the "
                    "serving() block."
                )
        return self.client

    def _close(self, closing: Closing) -> None:
        self.closing = True
        # Requests still in flight fail as their connections close; see
        # _closed() for those the body let go.
        self.let_go = list(self.in_flight)
        self.in_flight.clear()
        # Connections still being made: stop making them. Their requests fail
        # (with Twisted's ConnectingCancelledError), as any cancelled one does.
        for d in list(self.connecting):
            d.cancel()
        closing.close([*self.conns.open, *self.peers.values()])

    def _closed(self, errors: list[BaseException]) -> list[Tracked]:
        # A request the body let go failed as its connection closed; its
        # failure would be logged as unhandled whenever it is collected,
        # into whatever test runs then. It stays the request's result.
        for d in self.let_go:
            _quiet(d)
        self.let_go = []
        # A server side not seen yet is serving()'s to close.
        for claim in list(self.claims):
            claim.cancel()
        # Every connection is lost by now: this only cancels the pool's
        # timers (HTTPConnectionPool._removeConnection) and empties it.
        self.pool.closeCachedConnections()  # type: ignore[no-untyped-call]
        self.conns.release()
        return self.conns.to_report()


def http_client(
    *servers: ServingPort | Proxy,
    reactor: CleanconnReactor | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> AbstractAsyncContextManager[HTTPClient]:
    """
    A treq ``HTTPClient`` for the length of an ``async with`` block.

    .. code-block:: python

        async with serving(Site(root)) as port, http_client(port) as client:
            response = await client.get(base_url(port))
            assert response.code == 200

    The client has its own persistent ``HTTPConnectionPool``: keep-alive is
    on, as in production, and no connection is shared with other scopes or
    with treq's global pool. When the block ends, for any reason, every
    connection the client opened is closed: idle ones in the pool, ones
    whose response body was never read, ones with a request still in
    flight; connections still being made are cancelled. The exit waits for
    each one's ``connectionLost``, and for the server side of each one that
    reached a ``servers`` port. No timer of the pool is left behind.

    A request still in flight at the exit fails (``ResponseNeverReceived``,
    ``ResponseFailed``, ``ConnectingCancelledError``, or
    :class:`~cleanconn.ScopeClosed` for a retry). Await it inside the block,
    or after it, to see that failure; a request the block let go is never
    logged later as an unhandled error (that would land in whatever test
    runs when it is collected). Reading a body (``treq.content()`` and the
    like) is the response's, not the request's: await it inside the block.
    After the exit the client makes no new connection.

    :param servers: ports yielded by :func:`~cleanconn.serving` that the
        client talks to; their side of each connection is waited for too.
        For ``https`` URLs to a TLS port among them, the certificate is
        verified against exactly that port's CA (verification is never
        turned off).
        Without them only the client side is (the ``serving()`` exit still
        closes the server side).
    :param reactor: the reactor to use; the global one by default.
    :param timeout: seconds the exit waits for graceful closes. What is
        still open then is aborted, waited for, and reported by
        :class:`~cleanconn.CleanupTimeout`.
    :raises TypeError: a positional argument is not a serving port.
    :raises ValueError: ``timeout`` is not a positive, finite number.
    """
    return _HTTPClientScope(servers, reactor, timeout)
