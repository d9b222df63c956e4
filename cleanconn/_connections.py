"""
The connections of one scope: the only owner a connection's wrapper
reports to.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import IAddress, IProtocol
from twisted.python.failure import Failure

from ._streams import Waiting
from ._tracked import Tracked

#: What a scope does when one of its connections is made or lost.
OnConn = Callable[[Tracked], object]

#: What a scope does when a factory built no protocol for a connection at
#: an address (returned ``None``, or raised the error): a stand-in protocol
#: to track instead, or ``None`` to refuse the connection.
BuiltNothing = Callable[[IAddress, "BaseException | None"], "IProtocol | None"]


def _nothing(addr: IAddress, error: BaseException | None = None) -> None:
    return None


class ConnectionSet:
    """
    Every connection of one scope, open or with an error to report.

    The scope says what it does when a connection is made (``on_made``),
    begins to be lost (``on_losing``, before the user's ``connectionLost``
    runs), is lost (``on_lost``, after it), cannot be made (``on_failed``),
    or when its factory built no protocol (``built_nothing``, told what the
    factory raised, if it raised; it returns a stand-in protocol to track
    instead, or ``None`` to refuse the connection).

    :ivar open: the connections that have a transport and whose user's
        ``connectionLost`` has not returned yet, in the order they got it.
    :ivar errored: the connections whose user callbacks raised, open or not.
    """

    __slots__ = (
        "built_nothing",
        "errored",
        "on_failed",
        "on_losing",
        "on_lost",
        "on_made",
        "open",
    )

    def __init__(
        self,
        on_made: OnConn | None = None,
        on_lost: OnConn | None = None,
        on_failed: Callable[[Failure], object] | None = None,
        built_nothing: BuiltNothing = _nothing,
        on_losing: OnConn | None = None,
    ) -> None:
        self.open: dict[Tracked, None] = {}
        self.errored: list[Tracked] = []
        self.on_made = on_made
        self.on_lost = on_lost
        self.on_failed = on_failed
        self.built_nothing = built_nothing
        self.on_losing = on_losing
        _live[self] = None

    # What a connection's wrapper does to its set, inline for speed (see
    # Tracked.makeConnection and Tracked.connectionLost): ``open[conn]``
    # once it has a transport; ``on_made(conn)`` once the user's
    # connectionMade ran (or raised); ``on_losing(conn)`` before the user's
    # connectionLost runs; then ``del open[conn]`` and ``on_lost(conn)``.

    def failed(self, reason: Failure) -> None:
        """A connection could not be made: ``reason`` says why."""
        on_failed = self.on_failed
        if on_failed is not None:
            on_failed(reason)

    def to_report(self) -> list[Tracked]:
        """The connections whose callbacks' errors a scope's exit reports."""
        # An open one with errors is in both: it is reported once all the same.
        return [*self.errored, *self.open]

    def release(self) -> None:
        """Forget the scope's callbacks (they refer back to the scope)."""
        self.on_made = self.on_losing = self.on_lost = self.on_failed = None
        self.built_nothing = _nothing
        _live.pop(self, None)

    def __repr__(self) -> str:
        return f"<ConnectionSet: {len(self.open)} open>"


#: The connection sets of the scopes that have not ended: where
#: :func:`lost` looks for a protocol.
_live: dict[ConnectionSet, None] = {}


def lost(protocol: object) -> Deferred[None]:
    """
    Wait until ``protocol``'s ``connectionLost`` has run.

    .. code-block:: python

        async with connected(port, ClientFactory.forProtocol(Chat)) as chat:
            chat.transport.write(b"QUIT\\r\\n")
            await cleanconn.lost(chat)  # the server closed the connection

    ``protocol`` is any protocol of a cleanconn scope that has not ended:
    what :func:`~cleanconn.connected` yields, a server side
    (:meth:`ServingPort.accept() <cleanconn.ServingPort.accept>`,
    :meth:`~cleanconn.ServingPort.server_protocol`), a
    :class:`~cleanconn.Stream`, on either side. Once its connection is
    gone, the Deferred has already fired. It does not close anything: it
    waits (cancel it, or use a :func:`~cleanconn.deadline`, to bound it).
    A :class:`~cleanconn.Stream` stays open after its peer closes, until
    it closes too: read it to the end to see the peer close.

    :raises LookupError: ``protocol`` is open but no cleanconn scope made
        or accepted its connection.
    :raises TypeError: ``protocol`` was never connected.
    """
    for conns in _live:
        for conn in conns.open:
            if conn.wrapped is protocol:
                return _when_lost(conn)
    transport: Any = getattr(protocol, "transport", None)
    if transport is None:
        raise TypeError(
            f"lost(): {protocol!r} has no transport: it was never connected. "
            "Pass a protocol of a cleanconn scope (what connected() yields, "
            "port.accept() or port.server_protocol() returns)."
        )
    if getattr(transport, "disconnected", False):
        return succeed(None)
    raise LookupError(
        f"lost(): {protocol!r} is connected, but not by a cleanconn scope that "
        "is still open, so cleanconn cannot see its connectionLost. Connect it "
        "with connected() or accept it on a serving() port; for a connection "
        "of your own, fire a Deferred from its protocol's connectionLost."
    )


def _when_lost(conn: Tracked) -> Deferred[None]:
    def fire(_: Tracked) -> None:
        if not waiter.called:
            waiter.callback(None)

    def cancel(_: Deferred[None]) -> None:
        conn.forget_lost(fire)
        waiter.errback(CancelledError())

    def describe() -> str:
        return f"lost() of {conn.wrapped!r}: its connectionLost has not run"

    waiter: Deferred[None] = Waiting(cancel, describe)
    conn.when_lost(fire)
    return waiter
