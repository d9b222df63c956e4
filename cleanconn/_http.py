"""
``http_client()``: a treq client whose connections belong to a scope, and
``base_url()``: the URL of a serving port.
"""

from __future__ import annotations

from types import TracebackType
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
    IAddress,
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

from ._errors import ScopeClosed
from ._serving import DEFAULT_TIMEOUT, ServingPort, reachable_host
from ._tracking import (
    ForwardingFactory,
    Tracked,
    close_and_wait,
    finish,
    sequence,
    track,
)
from ._types import CleanconnReactor, check_timeout, default_reactor, enter_once


def base_url(port: IListeningPort) -> str:
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

    :param port: a port yielded by :func:`~cleanconn.serving`, or any
        listening port on TCP.
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

    def __init__(self, agent: Agent, reactor: CleanconnReactor) -> None:
        super().__init__(agent)
        self._scope_reactor = reactor

    def request(self, method: str, url: Any, **kwargs: Any) -> Deferred[Any]:
        kwargs.setdefault("reactor", self._scope_reactor)
        # One more frame between the caller and treq's warnings.
        kwargs["_stacklevel"] = kwargs.get("_stacklevel", 2) + 1
        return super().request(method, _ip_literal_safe(url), **kwargs)


@implementer(IProtocolFactory)
class _TrackingFactory(ForwardingFactory):
    """Builds the pool's HTTP protocol and wraps it for the scope."""

    def __init__(self, factory: IProtocolFactory, scope: _HTTPClientScope) -> None:
        self._factory = factory
        self._scope = scope
        self._seq = next(sequence)

    def buildProtocol(self, addr: IAddress) -> Tracked | None:
        proto = self._factory.buildProtocol(addr)
        if proto is None:
            return None
        conn = track(proto, "client", self._scope)
        conn.seq = self._seq
        return conn


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
        if scope._closing:
            return fail(ScopeClosed("http_client()"))
        d = self._endpoint.connect(_TrackingFactory(protocolFactory, scope))
        scope._connecting[d] = None

        def connected(conn: IProtocol) -> IProtocol:
            scope._connecting.pop(d, None)
            # The pool talks to its own protocol, not to the wrapper.
            assert isinstance(conn, Tracked)
            wrapped: IProtocol = conn.wrapped
            return wrapped

        def failed(reason: Failure) -> Failure:
            scope._connecting.pop(d, None)
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
        for server in self._scope._servers:
            address = server.getHost()
            if (
                server.tls is not None
                and getattr(address, "port", None) == number
                and getattr(address, "host", None) in (host, "0.0.0.0", "::")
            ):
                return server.tls.client_options(host)
        raise SchemeNotSupported(
            f"http_client(): no TLS serving() port at {host}:{number} was "
            "given, so there is no CA to trust for this https URL. Pass the "
            "port: http_client(port). cleanconn never turns verification off."
        )


class _HTTPClientScope:
    """The ``http_client()`` scope: owns the pool and every connection."""

    def __init__(
        self,
        servers: tuple[ServingPort, ...],
        reactor: CleanconnReactor | None,
        timeout: float,
    ) -> None:
        for server in servers:
            if not isinstance(server, ServingPort):
                raise TypeError(
                    "http_client() takes ports yielded by cleanconn.serving() "
                    f"as positional arguments, got {server!r}; pass reactor= "
                    "and timeout= by keyword."
                )
        self._timeout = check_timeout(timeout, "http_client()")
        self._servers = servers
        self._reactor = default_reactor(reactor)
        self._open: dict[Tracked, None] = {}
        self._errored: list[Tracked] = []
        self._peers: dict[Tracked, Tracked] = {}
        self._claims: dict[Deferred[Tracked], None] = {}
        self._connecting: dict[Deferred[Any], None] = {}
        self._closing = False
        self._entered = False
        #: The scope's pool: persistent, so tests exercise keep-alive.
        self.pool = HTTPConnectionPool(self._reactor, persistent=True)  # type: ignore[no-untyped-call]
        agent = Agent.usingEndpointFactory(  # type: ignore[no-untyped-call]
            self._reactor, _EndpointFactory(self._reactor, self), pool=self.pool
        )
        self.client: HTTPClient = _ScopedHTTPClient(agent, self._reactor)

    # Owner: connection bookkeeping ----------------------------------------

    def conn_opened(self, conn: Tracked) -> None:
        self._open[conn] = None

    def conn_made(self, conn: Tracked) -> None:
        server = self._server_of(conn)
        if server is None:
            return
        found = server._claim(conn)
        if isinstance(found, Tracked):
            self._add_peer(conn, found)
            return
        self._claims[found] = None

        def claimed(peer: Tracked) -> None:
            del self._claims[found]
            self._add_peer(conn, peer)

        def cancelled(reason: Failure) -> None:
            reason.trap(CancelledError)  # type: ignore[no-untyped-call]

        found.addCallbacks(claimed, cancelled)

    def conn_lost(self, conn: Tracked) -> None:
        del self._open[conn]
        if conn.errors:
            self._errored.append(conn)
        self._forget_peer(conn)

    def _add_peer(self, conn: Tracked, peer: Tracked) -> None:
        self._peers[conn] = peer
        peer.when_lost(lambda _: self._forget_peer(conn))

    def _forget_peer(self, conn: Tracked) -> None:
        """Once both sides are lost, there is nothing left to wait for."""
        peer = self._peers.get(conn)
        if peer is not None and peer.lost and conn.lost:
            del self._peers[conn]

    def _server_of(self, conn: Tracked) -> ServingPort | None:
        """The serving port at the other end of ``conn``, if it is one."""
        if not self._servers:
            return None
        peer = conn.transport.getPeer()
        for server in self._servers:
            address = server.getHost()
            if getattr(address, "port", None) != getattr(peer, "port", None):
                continue
            host = getattr(address, "host", None)
            if host in ("0.0.0.0", "::") or host == getattr(peer, "host", None):
                return server
        return None

    # The scope --------------------------------------------------------------

    async def __aenter__(self) -> HTTPClient:
        enter_once(self._entered, "http_client()")
        self._entered = True
        for server in self._servers:
            if server.closed:
                raise ValueError(
                    f"http_client(): {server!r} belongs to a serving() scope "
                    "that has ended; enter http_client() inside the "
                    "serving() block."
                )
        return self.client

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closing = True
        errors: list[BaseException] = []
        # Connections still being made: stop making them. Their requests fail
        # (with Twisted's ConnectingCancelledError), as any cancelled one does.
        for d in list(self._connecting):
            d.cancel()
        try:
            await close_and_wait(
                self._reactor,
                "http_client()",
                [*self._open, *self._peers.values()],
                self._timeout,
            )
        except BaseException as e:
            errors.append(e)
        finally:
            # A server side not seen yet is serving()'s to close.
            for claim in list(self._claims):
                claim.cancel()
            # Every connection is lost by now: this only cancels the pool's
            # timers (HTTPConnectionPool._removeConnection) and empties it.
            self.pool.closeCachedConnections()  # type: ignore[no-untyped-call]
        finish(exc, errors, [*self._errored, *self._open])


def http_client(
    *servers: ServingPort,
    reactor: CleanconnReactor | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> _HTTPClientScope:
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
    :class:`~cleanconn.ScopeClosed` for a retry): await it, or let it go.
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
