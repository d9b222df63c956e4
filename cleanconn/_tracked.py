"""
The wrapper under every connection cleanconn makes or accepts: it knows when
its connection was made and lost, and what the user's callbacks raised.

The wrapper hands the *real* transport to the user's protocol (as Twisted's
own endpoints do), forwards every callback, and provides exactly the
optional protocol interfaces the wrapped protocol provides, so transports
treat it the same way. :class:`TrackingFactory` builds it, on every side.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.interfaces import (
    IAddress,
    IConnector,
    IFileDescriptorReceiver,
    IHalfCloseableProtocol,
    IHandshakeListener,
    ILoggingContext,
    IProtocol,
    IProtocolFactory,
    IProtocolNegotiationFactory,
    ITransport,
)
from twisted.internet.protocol import ClientFactory
from twisted.python import log
from twisted.python.failure import Failure
from zope.interface import implementer

from ._addresses import address_key
from ._errors import ConnectionReport

if TYPE_CHECKING:
    from ._connections import ConnectionSet


@implementer(IProtocol, ILoggingContext)
class Tracked:
    """
    Wraps one user protocol on one side of one connection.

    :ivar wrapped: the user's protocol.
    :ivar owner: the :class:`~cleanconn._connections.ConnectionSet` told of
        each event.
    :ivar side: ``"client"`` or ``"server"``.
    :ivar lost: ``connectionLost`` has run.
    :ivar errors: ``(callback name, exception)`` raised by the user's code,
        or ``None``.
    :ivar key: what identifies the client end of the connection (see
        :func:`~cleanconn._addresses.address_key`): set when a server side
        is built, and on a client's first need of it (matching it to its
        server side, or naming it in an entry's error), while its socket is
        open.
    """

    __slots__ = (
        "_on_eof",
        "_on_handshake",
        "_on_lost",
        "errors",
        "handshaken",
        "key",
        "lost",
        "owner",
        "reason",
        "reported",
        "side",
        "transport",
        "wrapped",
    )

    def __init__(self, wrapped: IProtocol, side: str, owner: ConnectionSet) -> None:
        self.wrapped = wrapped
        self.side = side
        self.owner = owner
        self.transport: Any = None
        self.lost = False
        self.reason: Failure | None = None
        self.handshaken = False
        self.reported = False
        self.errors: list[tuple[str, BaseException]] | None = None
        self.key: object = None
        self._on_lost: list[Callable[[Tracked], object]] | None = None
        self._on_eof: list[Callable[[Tracked], object]] | None = None
        self._on_handshake: list[Callable[[Tracked], object]] | None = None

    def _handshake_completed(self) -> None:
        self.handshaken = True
        callbacks, self._on_handshake = self._on_handshake, None
        for callback in callbacks or ():
            callback(self)

    def _failed(self, where: str, error: BaseException) -> None:
        if self.errors is None:
            self.errors = []
            self.owner.errored.append(self)
        self.errors.append((where, error))

    def __repr__(self) -> str:
        return f"<cleanconn {self.side} {self.wrapped!r}>"

    def when_lost(self, callback: Callable[[Tracked], object]) -> None:
        """Call ``callback(self)`` once the user's ``connectionLost`` ran."""
        if self.lost:
            callback(self)
        elif self._on_lost is None:
            self._on_lost = [callback]
        else:
            self._on_lost.append(callback)

    def forget_lost(self, callback: Callable[[Tracked], object]) -> None:
        """Undo :meth:`when_lost` for ``callback`` if it has not run."""
        if self._on_lost is not None and callback in self._on_lost:
            self._on_lost.remove(callback)

    def when_eof(self, callback: Callable[[Tracked], object]) -> None:
        """Call ``callback(self)`` if a half-closeable protocol is told the
        peer closed its side (``readConnectionLost``), once."""
        if self._on_eof is None:
            self._on_eof = [callback]
        else:
            self._on_eof.append(callback)

    def forget_eof(self, callback: Callable[[Tracked], object]) -> None:
        """Undo :meth:`when_eof` for ``callback`` if it has not run."""
        if self._on_eof is not None and callback in self._on_eof:
            self._on_eof.remove(callback)

    def when_handshake(self, callback: Callable[[Tracked], object]) -> None:
        """Call ``callback(self)`` once the TLS handshake has completed."""
        if self.handshaken:
            callback(self)
        elif self._on_handshake is None:
            self._on_handshake = [callback]
        else:
            self._on_handshake.append(callback)

    def report(self) -> ConnectionReport:
        """Describe this connection for an error message."""
        return report_of(self.transport, self.side, type(self.wrapped))

    # IProtocol -----------------------------------------------------------

    def logPrefix(self) -> str:
        log_prefix = getattr(self.wrapped, "logPrefix", None)
        if log_prefix is None:
            return type(self.wrapped).__name__
        return str(log_prefix())

    # The connection set's bookkeeping is done here, inline: it is on the
    # path of every connection (see ConnectionSet for what each step means).

    def makeConnection(self, transport: ITransport) -> None:
        self.transport = transport
        # Twisted's repr of a server connection (what trial's janitor
        # prints) names the class of its protocol: make it the user's. (Its
        # log prefix asks logPrefix(), which answers the user's.)
        if self.side == "server":
            repstr = getattr(transport, "repstr", "")
            if repstr[:9] == "<Tracked ":
                name = type(self.wrapped).__name__
                transport.repstr = f"<{name}{repstr[8:]}"  # type: ignore[attr-defined]
        owner = self.owner
        owner.open[self] = None
        try:
            self.wrapped.makeConnection(transport)
        except BaseException as e:
            self._failed("connectionMade", e)
            raise
        finally:
            on_made = owner.on_made
            if on_made is not None:
                on_made(self)

    def connectionMade(self) -> None:  # pragma: no cover - never called
        """Not used: ``makeConnection`` forwards to the user's protocol."""

    def dataReceived(self, data: bytes) -> None:
        try:
            self.wrapped.dataReceived(data)
        except BaseException as e:
            self._failed("dataReceived", e)
            raise

    def connectionLost(self, reason: Failure) -> None:
        self.reason = reason
        owner = self.owner
        losing = owner.on_losing
        if losing is not None:  # what the user's code starts comes after
            losing(self)
        try:
            self.wrapped.connectionLost(reason)
        except BaseException as e:
            self._failed("connectionLost", e)
            raise
        finally:
            self.lost = True
            del owner.open[self]
            on_lost = owner.on_lost
            if on_lost is not None:
                on_lost(self)
            callbacks = self._on_lost
            if callbacks is not None:
                self._on_lost = None
                for callback in callbacks:
                    callback(self)


class _HalfCloseable:
    __slots__ = ()
    wrapped: Any
    _on_eof: list[Callable[[Tracked], object]] | None

    def readConnectionLost(self) -> None:
        try:
            self.wrapped.readConnectionLost()
        finally:
            callbacks, self._on_eof = self._on_eof, None  # type: ignore[misc]
            for callback in callbacks or ():
                callback(self)  # type: ignore[arg-type]

    def writeConnectionLost(self) -> None:
        self.wrapped.writeConnectionLost()


class _HandshakeListener:
    __slots__ = ()
    wrapped: Any
    _handshake_completed: Callable[[], None]

    def handshakeCompleted(self) -> None:
        try:
            if IHandshakeListener.providedBy(self.wrapped):
                self.wrapped.handshakeCompleted()
        finally:
            self._handshake_completed()


class _FileDescriptorReceiver:
    __slots__ = ()
    wrapped: Any

    def fileDescriptorReceived(self, descriptor: int) -> None:
        self.wrapped.fileDescriptorReceived(descriptor)


_OPTIONAL = (
    (IHalfCloseableProtocol, _HalfCloseable),
    (IHandshakeListener, _HandshakeListener),
    (IFileDescriptorReceiver, _FileDescriptorReceiver),
)
_classes: dict[tuple[bool, ...], type[Tracked]] = {(False, False, False): Tracked}


def track(
    wrapped: IProtocol, side: str, owner: ConnectionSet, tls: bool = False
) -> Tracked:
    """
    Wrap ``wrapped``; the wrapper provides the same optional interfaces.

    Under TLS (``tls=True``) it always listens for the handshake's end.
    """
    # What a class declares is cached; a protocol instance that declares
    # interfaces of its own (directlyProvides) is looked at each time.
    cached = "__provides__" not in getattr(wrapped, "__dict__", ())
    by_type = _by_type_tls if tls else _by_type
    if cached:
        cls = by_type.get(type(wrapped))
        if cls is not None:
            return cls(wrapped, side, owner)
    cls = _wrapper_class(wrapped, tls)
    if cached:
        by_type[type(wrapped)] = cls
    return cls(wrapped, side, owner)


def _named_like(user: type, base: type[TrackingFactory]) -> type[TrackingFactory]:
    """A subclass of ``base`` that Twisted's reprs name as ``user``."""
    return type(
        user.__name__,
        (base,),
        {
            "__slots__": (),
            "__module__": user.__module__,
            "__qualname__": user.__qualname__,
            "__doc__": f"cleanconn's wrapper around {user.__qualname__}.",
        },
    )


#: The wrapper class for each protocol class, without and with TLS.
_by_type: dict[type, type[Tracked]] = {}
_by_type_tls: dict[type, type[Tracked]] = {}


def _wrapper_class(wrapped: IProtocol, tls: bool) -> type[Tracked]:
    key = tuple(
        (tls and iface is IHandshakeListener) or iface.providedBy(wrapped)
        for iface, _ in _OPTIONAL
    )
    cls = _classes.get(key)
    if cls is None:
        bases = [mixin for (iface, mixin), on in zip(_OPTIONAL, key, strict=True) if on]
        cls = type("Tracked", (*bases, Tracked), {"__slots__": ()})
        for (iface, _), on in zip(_OPTIONAL, key, strict=True):
            if on:
                implementer(iface)(cls)
        _classes[key] = cls
    return cls


def report_of(transport: Any, side: str, protocol: type) -> ConnectionReport:
    """Describe the connection of ``transport`` for an error message."""
    return ConnectionReport(
        side=side,
        local=_address(transport, "getHost"),
        peer=_address(transport, "getPeer"),
        protocol=protocol,
        unsent=unsent_bytes(transport),
    )


def protocols_of(transport: Any) -> list[Any]:
    """The protocol of ``transport`` and those it wraps (a TLS wrapper, an
    endpoint's wrapper, a cleanconn wrapper), outermost first."""
    found: list[Any] = []
    protocol = getattr(transport, "protocol", None)
    while protocol is not None and len(found) < 4:
        found.append(protocol)
        protocol = getattr(protocol, "wrappedProtocol", None) or getattr(
            protocol, "_wrappedProtocol", None
        )
    return found


def _address(transport: Any, getter: str) -> object:
    try:
        return getattr(transport, getter)()
    except Exception:
        return None


def unsent_bytes(transport: Any) -> int | None:
    """
    Bytes a transport still holds for writing, or ``None`` if unknown.

    Reads Twisted's ``FileDescriptor`` buffers; a TLS transport adds the
    buffer of the TCP transport under it.
    """
    total: int | None = None
    while transport is not None:
        try:
            pending = (
                len(transport.dataBuffer) - transport.offset + transport._tempDataLen
            )
        except (AttributeError, TypeError):
            pending = None
        if pending is not None:
            total = (total or 0) + pending
        # TLSMemoryBIOProtocol: its buffered application data, then the
        # transport under it.
        app = getattr(transport, "_appSendBuffer", None)
        if app:
            total = (total or 0) + sum(len(chunk) for chunk in app)
        inner = getattr(transport, "transport", None)
        transport = inner if inner is not transport else None
    return total


# It runs once, at import, before mutmut picks a mutant: no mutant of it
# can run, so none is made.
def _alpn_from_factory() -> bool:  # pragma: no mutate block
    """
    Whether Twisted's TLS asks the factory it wraps for its ALPN protocols
    on each connection without changing the shared context (Twisted 23.8
    and later). Before, it set them on the context for each connection,
    which pyOpenSSL now refuses after the first one: there, the protocols
    go into the server's TLS options instead (``serving(..., tls=...)``).
    """
    try:
        from twisted.internet import _sslverify
    except ImportError:  # pragma: no cover - no TLS installed; the tests have it
        return False
    return hasattr(_sslverify, "protosFromProtocol")


#: See :func:`_alpn_from_factory`.
ALPN_FROM_FACTORY = _alpn_from_factory()


def tracking_factory(
    factory: IProtocolFactory, owner: ConnectionSet, side: str, tls: bool = False
) -> TrackingFactory:
    """
    A :class:`TrackingFactory` for ``factory``, named as its class (so that
    Twisted's reprs and logs name the user's factory, not cleanconn's), and
    providing ``IProtocolNegotiationFactory`` when ``factory`` does (a TLS
    server asks the factory it wraps for ALPN protocols), where Twisted
    can use it (:data:`ALPN_FROM_FACTORY`).
    """
    # What a class declares is cached, as for protocols (see track()).
    cached = "__provides__" not in getattr(factory, "__dict__", ())
    cls = _factory_classes.get(type(factory)) if cached else None
    if cls is None:
        negotiates = ALPN_FROM_FACTORY and IProtocolNegotiationFactory.providedBy(
            factory
        )
        base = _NegotiatingFactory if negotiates else TrackingFactory
        cls = _named_like(type(factory), base)
        if cached:
            _factory_classes[type(factory)] = cls
    return cls(factory, owner, side, tls)


@implementer(IProtocolFactory)
class TrackingFactory(ClientFactory):
    """
    Builds the user's protocol with ``factory`` and wraps it for ``owner``;
    the same factory on every side (a ``ClientFactory``, so that
    ``connectTCP`` takes it; ports and endpoints take any factory).

    A protocol ``factory`` does not build (``None``) is replaced by what
    ``owner.built_nothing(addr, None)`` returns: a stand-in protocol, or
    ``None``. A server factory that raises is logged as Twisted logs it,
    told to ``owner.built_nothing(addr, error)``, and the connection closed.
    A server side's wrapper gets the address key of the client end.
    """

    noisy = False

    def __init__(
        self,
        factory: IProtocolFactory,
        owner: ConnectionSet,
        side: str,
        tls: bool = False,
    ) -> None:
        self._factory = factory
        self._owner = owner
        self._side = side
        self._tls = tls

    def buildProtocol(self, addr: IAddress) -> Tracked | None:  # type: ignore[override]
        try:
            proto = self._factory.buildProtocol(addr)
        except Exception as e:
            if self._side != "server":
                raise
            # Twisted would log it and hold the accepted socket open until
            # the logged traceback is collected: the client would wait out
            # its timeout. Log it as Twisted does, and close at once.
            log.err(Failure(), f"{self.logPrefix()}.buildProtocol() raised")  # type: ignore[no-untyped-call]
            self._owner.built_nothing(addr, e)
            return None
        if proto is None:
            proto = self._owner.built_nothing(addr, None)
            if proto is None:
                return None
        conn = track(proto, self._side, self._owner, self._tls)
        if self._side == "server":
            conn.key = address_key(addr)
        return conn

    def clientConnectionFailed(self, connector: IConnector, reason: Failure) -> None:
        self._owner.failed(reason)

    def clientConnectionLost(self, connector: IConnector, reason: Failure) -> None:
        # The connector and its transport refer to each other; a connector is
        # never reconnected here, so drop the link (as Twisted does when a
        # connect fails) and both are freed by reference counting.
        try:  # noqa: SIM105 - cheaper than suppress() on the hot path
            connector.transport = None  # type: ignore[attr-defined]
        except AttributeError:  # a connector of another kind
            pass

    def doStart(self) -> None:
        self._factory.doStart()

    def doStop(self) -> None:
        self._factory.doStop()

    def logPrefix(self) -> str:
        prefix = getattr(self._factory, "logPrefix", None)
        return str(prefix()) if prefix else type(self._factory).__name__


@implementer(IProtocolNegotiationFactory)
class _NegotiatingFactory(TrackingFactory):
    """A tracking factory for a factory that negotiates ALPN protocols."""

    def acceptableProtocols(self) -> list[bytes]:
        protocols: list[bytes] = self._factory.acceptableProtocols()  # type: ignore[attr-defined]
        return protocols


#: The tracking factory class for each user factory class.
_factory_classes: dict[type, type[TrackingFactory]] = {}
