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
    :ivar errors: ``(callback name, exception)`` raised by the user's code,
        or ``None``.
    :ivar key: what identifies the client end of the connection (see
        ``_serving.address_key``).
    :ivar seq: :data:`sequence` when connecting started (client side).
    :ivar lost_at: :data:`sequence` when ``connectionLost`` began.
    """

    __slots__ = (
        "_on_handshake",
        "_on_lost",
        "errors",
        "handshaken",
        "key",
        "lost",
        "lost_at",
        "owner",
        "reason",
        "reported",
        "seq",
        "side",
        "transport",
        "wrapped",
    )

    def __init__(self, wrapped: IProtocol, side: str, owner: Owner) -> None:
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
        self.seq = -1
        self.lost_at = -1
        self._on_lost: list[Callable[[Tracked], object]] | None = None
        self._on_handshake: list[Callable[[Tracked], object]] | None = None

    def _handshake_completed(self) -> None:
        self.handshaken = True
        callbacks, self._on_handshake = self._on_handshake, None
        for callback in callbacks or ():
            callback(self)

    def _failed(self, where: str, error: BaseException) -> None:
        if self.errors is None:
            self.errors = []
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
        self.owner.conn_opened(self)
        try:
            self.wrapped.makeConnection(transport)
        except BaseException as e:
            self._failed("connectionMade", e)
            raise
        finally:
            self.owner.conn_made(self)

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
        self.lost_at = next(sequence)
        try:
            self.wrapped.connectionLost(reason)
        except BaseException as e:
            self._failed("connectionLost", e)
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
    __slots__ = ()
    wrapped: Any

    def readConnectionLost(self) -> None:
        self.wrapped.readConnectionLost()

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


def raise_errors(conns: Iterable[Tracked]) -> None:
    """Raise :class:`ProtocolError` if the user's callbacks on ``conns``
    raised (and that was not reported yet)."""
    error = take_errors(conns)
    if error is not None:
        raise error


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


def close(
    reactor: CleanconnReactor,
    scope: str,
    conns: Iterable[Tracked],
    timeout: float,
    port: tuple[Deferred[Any], object] | None = None,
) -> Closing | None:
    """
    Close ``conns`` gracefully and start waiting for each one's
    ``connectionLost`` (and for ``port``'s stopListening Deferred, given
    with its address): await the returned :attr:`Closing.done`, which fails
    with :class:`CleanupTimeout` if it had to abort. ``None`` when there is
    nothing to wait for.

    A healthy close completes as soon as the last ``connectionLost`` ran:
    the one deadline scheduled for ``timeout`` is then cancelled, never
    waited for. Past ``timeout`` what is left is aborted and waited for (at
    most :data:`ABORT_GRACE` seconds more). A waiter whose wait is cancelled
    awaits :meth:`Closing.abort` before it goes on being cancelled, as
    :func:`close_and_wait` does.
    """
    left = []
    for conn in conns:
        if not conn.lost:
            try:  # noqa: SIM105 - cheaper than suppress() on the hot path
                conn.transport.loseConnection()
            except Exception:  # an odd transport: the deadline aborts it
                pass
            left.append(conn)
    port_d = port[0] if port is not None and not port[0].called else None
    address = port[1] if port else None
    closing = Closing(reactor, scope, left, port_d, address, timeout)
    return closing if closing.pending else None


async def close_and_wait(
    reactor: CleanconnReactor,
    scope: str,
    conns: Iterable[Tracked],
    timeout: float,
    port: tuple[Deferred[Any], object] | None = None,
    body: BaseException | None = None,
    report: Iterable[Tracked] = (),
) -> None:
    """
    :func:`close` and wait, then :func:`finish`: raise the first cleanup
    error (:class:`CleanupTimeout`, ``CancelledError``), or attach it to
    ``body``, the exception the scope's body raised, which wins. What the
    user's callbacks raised on ``report`` is reported too.

    A cancelled wait aborts what is left and waits for it (see
    :meth:`Closing.abort`) before ``CancelledError`` goes on.
    """
    errors: list[BaseException] = []
    closing = close(reactor, scope, conns, timeout, port)
    if closing is not None:
        try:
            await closing.done
        except CancelledError as e:
            errors.append(e)
            with contextlib.suppress(CancelledError):  # cancelled again
                await closing.abort()
        except BaseException as e:
            errors.append(e)
    finish(body, errors, report)


class Closing:
    """
    Waits until every one of ``conns`` is lost and ``port_d`` fired.

    :ivar done: fires then. After ``timeout`` seconds what is left is
        aborted and ``done`` fails with :class:`CleanupTimeout`, naming it,
        at most :data:`ABORT_GRACE` seconds later.

    A waiter whose wait for ``done`` is cancelled (``CancelledError``) must
    then wait for :meth:`abort` before it goes on being cancelled: awaiting
    a ``Deferred`` is the only way to wait, and cancelling ``done`` fails it
    at once.
    """

    __slots__ = (
        "aborted",
        "address",
        "conns",
        "done",
        "expired",
        "pending",
        "port_d",
        "reactor",
        "scope",
        "timeout",
        "timer",
        "waiter",
    )

    def __init__(
        self,
        reactor: CleanconnReactor,
        scope: str,
        conns: list[Tracked],
        port_d: Deferred[Any] | None,
        address: object,
        timeout: float,
    ) -> None:
        self.reactor = reactor
        self.scope = scope
        self.conns = conns  # close() passes only those not lost
        self.port_d = port_d
        self.address = address
        self.timeout = timeout
        self.aborted: list[ConnectionReport] = []
        self.pending = len(conns) + (port_d is not None)
        self.timer: IDelayedCall | None = None
        self.done: Deferred[None] = Deferred()
        #: What fires when it is over: ``done``, or the Deferred of abort().
        self.waiter = self.done
        self.expired = False
        for conn in conns:
            conn.when_lost(self._one)
        if port_d is not None:
            port_d.addBoth(self._one)  # its failure is the port's to report
        if self.pending > 0:  # not lost at once, while registering
            self.timer = reactor.callLater(timeout, self._expire)

    def _one(self, _: object = None) -> None:
        self.pending -= 1
        if self.pending <= 0:
            self._finish()

    def _finish(self) -> None:
        """All is lost (or the grace after aborting is over): fire the waiter."""
        timer, self.timer = self.timer, None
        if timer is not None and timer.active():
            timer.cancel()
        waiter = self.waiter
        if waiter.called:  # done was cancelled, and abort() was not awaited
            return
        port_left = self.port_d is not None and not self.port_d.called
        if (self.aborted or port_left) and waiter is self.done:  # not abort()'s
            address = self.address if port_left else None
            waiter.errback(
                CleanupTimeout(self.scope, self.timeout, self.aborted, address)
            )
        else:
            waiter.callback(None)

    def _expire(self) -> None:
        """Abort what is left; stop waiting :data:`ABORT_GRACE` s later."""
        # Bound the aborts first: one of them may raise, or finish at once.
        self.expired = True
        self.timer = self.reactor.callLater(ABORT_GRACE, self._finish)
        for conn in self.conns:
            if not conn.lost:
                self.aborted.append(conn.report())
                with contextlib.suppress(Exception):  # reported, not raised
                    conn.transport.abortConnection()

    def abort(self) -> Deferred[None]:
        """
        For a waiter whose wait for ``done`` was cancelled: abort what is
        left now (unless the deadline already did), and wait for it. The
        returned Deferred fires (with ``None``) once that is lost too, or
        once :data:`ABORT_GRACE` seconds have passed since the aborts;
        ``done`` never fires after this.
        """
        waiter = self.waiter = Deferred()
        if self.pending <= 0:
            self._finish()
        elif not self.expired:  # else the aborts are done, the grace runs
            timer = self.timer
            if timer is not None and timer.active():
                timer.cancel()
            self._expire()
        return waiter


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
