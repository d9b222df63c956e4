"""
Every exception cleanconn raises, in one place.

Each one says whose fault it is and what to do about it; the details are
attributes, so a test can assert on them without parsing the message.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ConnectionReport:
    """
    What cleanconn knew about a connection it had to report.

    :ivar side: ``"client"`` or ``"server"``.
    :ivar local: the local address, as Twisted's ``transport.getHost()`` gave it.
    :ivar peer: the peer address, as Twisted's ``transport.getPeer()`` gave it.
    :ivar protocol: the class of the user's protocol on that side.
    :ivar unsent: bytes still buffered for writing when the connection was
        aborted, or ``None`` when the transport does not say.
    """

    side: str
    local: object
    peer: object
    protocol: type
    unsent: int | None

    def __str__(self) -> str:
        unsent = "" if not self.unsent else f", {self.unsent} bytes unsent"
        return (
            f"{self.side} {self.protocol.__qualname__} "
            f"(local {_fmt(self.local)}, peer {_fmt(self.peer)}{unsent})"
        )


def _fmt(address: object) -> str:
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if host is not None and port is not None:
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    name = getattr(address, "name", None)
    if name is not None:
        return repr(name)
    return repr(address)


class CleanConnError(Exception):
    """
    Base class of every error cleanconn raises itself.

    Errors that Twisted raised (a refused connection, a DNS failure) are
    passed through unchanged and are not subclasses of this.
    """


class CleanupTimeout(CleanConnError):
    """
    A scope's exit had to abort what did not close gracefully in time.

    Everything listed was aborted and waited for: the reactor is clean. The
    cause is almost always a peer that stopped reading (so the last writes
    could never be flushed), a protocol that never closes its side (a
    half-closeable protocol), or a listening port whose ``stopListening``
    never fired.

    :ivar timeout: the ``timeout`` of the scope, in seconds.
    :ivar aborted: a :class:`ConnectionReport` for each aborted connection.
    :ivar port: the address of a listening port that had not stopped by the
        deadline, else ``None``.
    """

    def __init__(
        self,
        scope: str,
        timeout: float,
        aborted: Sequence[ConnectionReport],
        port: object = None,
    ) -> None:
        self.timeout = timeout
        self.aborted = tuple(aborted)
        self.port = port
        lines = [f"{scope} did not close gracefully within timeout={timeout}s."]
        if aborted:
            lines.append(f"Aborted {len(aborted)} connection(s):")
            lines.extend(f"  - {report}" for report in aborted)
        if any(report.unsent for report in aborted):
            lines.append(
                "Bytes were still unsent: the peer was not reading (paused, "
                "or never reads). Make the peer read, or stop writing before "
                "the scope ends."
            )
        else:
            lines.append(
                "Their protocol did not close in time: look for a peer that "
                "stopped reading, a half-closeable protocol that never closes "
                "its side, or a TLS peer that never answers close_notify. If "
                "the close is merely slow, raise timeout=."
            )
        if port is not None:
            lines.append(
                f"The listening port {_fmt(port)} did not report stopping: its "
                "stopListening() Deferred never fired."
            )
        super().__init__("\n".join(lines))


class ProtocolError(CleanConnError):
    """
    A protocol callback of the code under test raised.

    Twisted handled the exception as it always does (logged it and, for
    ``dataReceived``, dropped the connection); cleanconn still cleaned up and
    raises this so the failure cannot go unnoticed outside trial. Fix the
    protocol: the original exception is ``__cause__`` and in :attr:`errors`.

    :ivar errors: ``(report, callback name, exception)`` for each failure.
    """

    def __init__(
        self,
        errors: Sequence[tuple[ConnectionReport, str, BaseException]],
    ) -> None:
        self.errors = tuple(errors)
        lines = [f"{len(self.errors)} protocol callback(s) raised:"]
        lines.extend(
            f"  - {report.side} {report.protocol.__qualname__}.{where}() raised {exc!r}"
            for report, where, exc in self.errors
        )
        lines.append(
            "The connection was still closed and waited for. Fix the "
            "protocol; the first exception is chained as __cause__."
        )
        super().__init__("\n".join(lines))


class ConnectionRejected(CleanConnError):
    """
    The server closed a new connection before any protocol handled it.

    With a :func:`~cleanconn.serving` port this means the server factory's
    ``buildProtocol`` returned ``None`` for the connection.

    :ivar address: the client's local address of the rejected connection.
    """

    def __init__(self, message: str, address: object) -> None:
        self.address = address
        super().__init__(message)


class DirtyReactorError(CleanConnError):
    """
    Something was left on the reactor that was not there before.

    :ivar selectables: readers and writers left behind.
    :ivar delayed_calls: ``DelayedCall`` objects left pending.
    """

    def __init__(
        self, selectables: Sequence[object], delayed_calls: Sequence[object]
    ) -> None:
        self.selectables = tuple(selectables)
        self.delayed_calls = tuple(delayed_calls)
        lines = ["The reactor is dirty: this code left behind"]
        lines.extend(f"  - selectable {s!r}" for s in self.selectables)
        lines.extend(f"  - delayed call {c}" for c in self.delayed_calls)
        lines.append(
            "Close each connection and listening port and wait for it "
            "(cleanconn.serving() and cleanconn.connected() do both), and "
            "cancel each DelayedCall you scheduled."
        )
        super().__init__("\n".join(lines))


class ConnectTimeout(CleanConnError):
    """
    ``connected()`` connected, but the server side never showed up in time.

    The connection was closed again and waited for; the block did not run.

    :ivar timeout: the scope's ``timeout``, in seconds.
    """

    def __init__(self, message: str, timeout: float) -> None:
        self.timeout = timeout
        super().__init__(message)


class TLSUnavailable(CleanConnError, ImportError):
    """
    TLS was asked for, but its optional dependencies are not installed.

    Install them with ``pip install 'cleanconn[tls]'`` (pyOpenSSL,
    service-identity and cryptography, as ``twisted[tls]`` declares them).
    """
