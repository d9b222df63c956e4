"""
The one mechanism under every scope: a thin protocol wrapper that knows when
its connection was made and lost, and a bounded "close these and wait" step.

The wrapper hands the *real* transport to the user's protocol (as Twisted's
own endpoints do), forwards every callback, and provides exactly the
optional protocol interfaces the wrapped protocol provides, so transports
treat it the same way.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterable
from typing import Any
from typing import Protocol as TypingProtocol

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import (
    IDelayedCall,
    IFileDescriptorReceiver,
    IHalfCloseableProtocol,
    IHandshakeListener,
    IProtocol,
    IProtocolFactory,
    ITransport,
)
from twisted.python.failure import Failure
from zope.interface import implementer

from ._errors import CleanupTimeout, ConnectionReport, ProtocolError
from ._types import CleanconnReactor

#: Orders connection attempts and server-side losses, so that a server
#: connection lost before a client started connecting is never matched to it
#: (the kernel reuses a client port quickly on loopback).
sequence = itertools.count()

#: After an abort, how long to wait for ``connectionLost`` before reporting
#: the connection as not closable (an abort normally completes at once).
ABORT_GRACE = 1.0


class Owner(TypingProtocol):
    """What a scope that owns connections hears about them."""

    def conn_opened(self, conn: Tracked) -> None:
        """``conn`` has a transport; the user's ``connectionMade`` is next."""

    def conn_made(self, conn: Tracked) -> None:
        """The user's ``connectionMade`` has run (or raised)."""

    def conn_lost(self, conn: Tracked) -> None:
        """The user's ``connectionLost`` has run (or raised)."""


@implementer(IProtocol)
class Tracked:
    """
    Wraps one user protocol on one side of one connection.

    :ivar wrapped: the user's protocol.
    :ivar side: ``"client"`` or ``"server"``.
    :ivar lost: ``connectionLost`` has run.
    :ivar errors: ``(callback name, exception)`` raised by the user's code.
    """

    transport: Any = None
    connected = 0
    lost = False
    reason: Failure | None = None
    handshaken = False
    reported = False
    key: object = None
    #: :data:`sequence` when connecting started (client side), and when
    #: ``connectionLost`` began (both sides).
    seq = -1
    lost_at = -1
    _on_lost: list[Callable[[Tracked], object]] | None = None
    _on_handshake: list[Callable[[Tracked], object]] | None = None

    def __init__(self, wrapped: IProtocol, side: str, owner: Owner) -> None:
        self.wrapped = wrapped
        self.side = side
        self.owner = owner
        self.errors: list[tuple[str, BaseException]] = []

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
        transport = self.transport
        return ConnectionReport(
            side=self.side,
            local=_address(transport, "getHost"),
            peer=_address(transport, "getPeer"),
            protocol=type(self.wrapped),
            unsent=unsent_bytes(transport),
        )

    # IProtocol -----------------------------------------------------------

    def logPrefix(self) -> str:
        log_prefix = getattr(self.wrapped, "logPrefix", None)
        if log_prefix is None:
            return type(self.wrapped).__name__
        return str(log_prefix())

    def makeConnection(self, transport: ITransport) -> None:
        self.transport = transport
        self.connected = 1
        self.owner.conn_opened(self)
        try:
            self.wrapped.makeConnection(transport)
        except BaseException as e:
            self.errors.append(("connectionMade", e))
            raise
        finally:
            self.owner.conn_made(self)

    def connectionMade(self) -> None:  # pragma: no cover - never called
        """Not used: ``makeConnection`` forwards to the user's protocol."""

    def dataReceived(self, data: bytes) -> None:
        try:
            self.wrapped.dataReceived(data)
        except BaseException as e:
            self.errors.append(("dataReceived", e))
            raise

    def connectionLost(self, reason: Failure) -> None:
        self.connected = 0
        self.reason = reason
        self.lost_at = next(sequence)
        try:
            self.wrapped.connectionLost(reason)
        except BaseException as e:
            self.errors.append(("connectionLost", e))
            raise
        finally:
            self.lost = True
            self.owner.conn_lost(self)
            callbacks = self._on_lost
            if callbacks is not None:
                self._on_lost = None
                for callback in callbacks:
                    callback(self)


class _HalfCloseable:
    wrapped: Any

    def readConnectionLost(self) -> None:
        self.wrapped.readConnectionLost()

    def writeConnectionLost(self) -> None:
        self.wrapped.writeConnectionLost()


class _HandshakeListener:
    wrapped: Any
    handshaken: bool
    _on_handshake: list[Callable[[Tracked], object]] | None

    def handshakeCompleted(self) -> None:
        self.handshaken = True
        try:
            if IHandshakeListener.providedBy(self.wrapped):
                self.wrapped.handshakeCompleted()
        finally:
            callbacks, self._on_handshake = self._on_handshake, None
            for callback in callbacks or ():
                callback(self)  # type: ignore[arg-type]


class _FileDescriptorReceiver:
    wrapped: Any

    def fileDescriptorReceived(self, descriptor: int) -> None:
        self.wrapped.fileDescriptorReceived(descriptor)


_OPTIONAL = (
    (IHalfCloseableProtocol, _HalfCloseable),
    (IHandshakeListener, _HandshakeListener),
    (IFileDescriptorReceiver, _FileDescriptorReceiver),
)
_classes: dict[tuple[bool, ...], type[Tracked]] = {(False, False, False): Tracked}


class ForwardingFactory:
    """
    The part of a wrapping factory that passes start, stop and the log
    prefix through to the user's factory, ``_factory``.
    """

    _factory: IProtocolFactory

    def doStart(self) -> None:
        self._factory.doStart()

    def doStop(self) -> None:
        self._factory.doStop()

    def logPrefix(self) -> str:
        prefix = getattr(self._factory, "logPrefix", None)
        return str(prefix()) if prefix else type(self._factory).__name__


def track(wrapped: IProtocol, side: str, owner: Owner, tls: bool = False) -> Tracked:
    """
    Wrap ``wrapped``; the wrapper provides the same optional interfaces.

    Under TLS (``tls=True``) it always listens for the handshake's end.
    """
    key = tuple(
        (tls and iface is IHandshakeListener) or iface.providedBy(wrapped)
        for iface, _ in _OPTIONAL
    )
    cls = _classes.get(key)
    if cls is None:
        bases = [mixin for (iface, mixin), on in zip(_OPTIONAL, key, strict=True) if on]
        cls = type("Tracked", (*bases, Tracked), {})
        for (iface, _), on in zip(_OPTIONAL, key, strict=True):
            if on:
                implementer(iface)(cls)
        _classes[key] = cls
    return cls(wrapped, side, owner)


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


class _Countdown:
    """Fires ``done`` when ``pending`` things have each called ``one``."""

    __slots__ = ("done", "pending")

    def __init__(self, pending: int) -> None:
        self.pending = pending
        self.done: Deferred[None] = Deferred()

    def one(self, _: object = None) -> None:
        self.pending -= 1
        if self.pending <= 0:
            self.finish()

    def finish(self) -> None:
        """Stop waiting, whatever is still pending."""
        if not self.done.called:
            self.done.callback(None)


def take_errors(conns: Iterable[Tracked]) -> ProtocolError | None:
    """Collect, once, what the user's callbacks raised on ``conns``."""
    found: list[tuple[ConnectionReport, str, BaseException]] = []
    for conn in conns:
        if conn.errors and not conn.reported:
            conn.reported = True
            report = conn.report()
            found.extend((report, where, exc) for where, exc in conn.errors)
    if not found:
        return None
    error = ProtocolError(found)
    error.__cause__ = found[0][2]
    return error


def finish(
    body: BaseException | None,
    errors: list[BaseException],
    conns: Iterable[Tracked] = (),
) -> None:
    """
    End a scope's exit: raise the first cleanup error, unless the body raised.

    What the user's callbacks raised on ``conns`` (and was not reported yet)
    comes last, as a :class:`ProtocolError`. The body's exception always
    wins; cleanup errors are then attached to it as notes. Further cleanup
    errors are attached to the first one.
    """
    protocol_error = take_errors(conns)
    if protocol_error is not None:
        errors = [*errors, protocol_error]
    if not errors:
        return
    if body is not None:
        for error in errors:
            merge_errors(body, error)
        return
    first, *rest = errors
    for error in rest:
        merge_errors(first, error)
    raise first


async def close_and_wait(
    reactor: CleanconnReactor,
    scope: str,
    conns: Iterable[Tracked],
    timeout: float,
    port: tuple[Deferred[Any], object] | None = None,
) -> None:
    """
    Close ``conns`` gracefully and wait for each one's ``connectionLost``
    (and for ``port``'s stopListening Deferred, given with its address).

    A healthy close completes as soon as the last ``connectionLost`` ran:
    the one deadline scheduled for ``timeout`` is then cancelled, never
    waited for. Past ``timeout`` what is left is aborted and waited for (at
    most :data:`ABORT_GRACE` seconds more), and :class:`CleanupTimeout`
    names it. If the wait is cancelled, everything left is aborted at once
    and waited for the same way before ``CancelledError`` propagates.
    """
    waiting = [conn for conn in conns if not conn.lost]
    for conn in waiting:
        try:  # noqa: SIM105 - cheaper than suppress() on the hot path
            conn.transport.loseConnection()
        except Exception:  # an odd transport: the deadline aborts it
            pass
    port_d = port[0] if port is not None and not port[0].called else None
    waiting = [conn for conn in waiting if not conn.lost]
    if not waiting and port_d is None:
        return
    aborted: list[ConnectionReport] = []
    try:
        await _wait(reactor, waiting, port_d, timeout, aborted)
    except CancelledError:
        await _wait(reactor, waiting, port_d, 0, [])
        raise
    if aborted or (port_d is not None and not port_d.called):
        address = None
        if port is not None and port_d is not None and not port_d.called:
            address = port[1]
        raise CleanupTimeout(scope, timeout, aborted, address)


async def _wait(
    reactor: CleanconnReactor,
    conns: list[Tracked],
    port_d: Deferred[Any] | None,
    timeout: float,
    aborted: list[ConnectionReport],
) -> None:
    """
    Wait until every one of ``conns`` is lost and ``port_d`` fired. After
    ``timeout`` seconds (at once for 0), abort what is left, noting it in
    ``aborted``, and wait at most :data:`ABORT_GRACE` seconds more.
    """
    left = [conn for conn in conns if not conn.lost]
    port_pending = port_d is not None and not port_d.called
    if not left and not port_pending:
        return
    countdown = _Countdown(len(left) + port_pending)
    for conn in left:
        conn.when_lost(countdown.one)
    if port_pending:
        assert port_d is not None
        port_d.addBoth(countdown.one)  # its failure is the port's to report

    timer: IDelayedCall

    def expire() -> None:
        nonlocal timer
        # Bound the aborts first: one of them may raise, or finish at once.
        timer = reactor.callLater(ABORT_GRACE, countdown.finish)
        for conn in left:
            if not conn.lost:
                aborted.append(conn.report())
                with contextlib.suppress(Exception):  # reported, not raised
                    conn.transport.abortConnection()

    timer = reactor.callLater(timeout, expire)
    try:
        await countdown.done
    finally:
        if timer.active():
            timer.cancel()


def merge_errors(body: BaseException | None, cleanup: BaseException) -> None:
    """
    Make a cleanup failure visible without replacing the body's exception.

    With no body exception the cleanup failure is raised; otherwise it is
    attached to the body's exception as a note (and kept as an attribute).
    """
    if body is None:
        raise cleanup
    note = f"cleanconn: also, during cleanup: {type(cleanup).__name__}: {cleanup}"
    add_note = getattr(body, "add_note", None)
    if add_note is not None:
        add_note(note)
    cleanup_errors: list[BaseException] = list(
        getattr(body, "cleanconn_cleanup_errors", ())
    )
    cleanup_errors.append(cleanup)
    with contextlib.suppress(Exception):  # an exception type with __slots__
        body.cleanconn_cleanup_errors = cleanup_errors  # type: ignore[attr-defined]
