"""
Teardown: close what a scope owns, wait for each close with one deadline,
abort what is late, and end the exit with the right exception.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall

from ._errors import CleanupTimeout, ConnectionReport, ProtocolError
from ._reactor import CleanconnReactor
from ._tracked import Tracked, protocols_of, report_of

#: After an abort, how long to wait for ``connectionLost`` before reporting
#: the connection as not closable (an abort normally completes at once).
ABORT_GRACE = 1.0

#: The states of a :class:`Closing`.
GATHERING = "gathering"  # being told what to close; no timer yet
WAITING = "waiting"  # waiting for graceful closes, the deadline armed
EXPIRED = "expired"  # the deadline passed: aborted, the grace period runs
CANCELLED = "cancelled"  # the wait was cancelled: aborted, the grace runs
DONE = "done"  # all closed, or the grace period is over


class Closing:
    """
    One scope exit: close connections and wait for a listening port to stop,
    all within ``timeout`` seconds.

    :meth:`close` closes connections gracefully and :meth:`wait_for` adds a
    Deferred to wait for (a port's stop); then :meth:`wait` waits until all
    of it is done. A healthy close ends as soon as the last
    ``connectionLost`` ran: the one deadline is then cancelled, never waited
    for. Past ``timeout``, what is left is aborted and waited for (at most
    :data:`ABORT_GRACE` seconds more) and reported by
    :class:`~cleanconn.CleanupTimeout`. A wait that is cancelled aborts what
    is left at once and waits for that too, before ``CancelledError`` goes
    on: nothing is left on the reactor either way.

    :ivar state: :data:`GATHERING`, :data:`WAITING`, :data:`EXPIRED`,
        :data:`CANCELLED` or :data:`DONE`.
    """

    __slots__ = (
        "_aborted",
        "_address",
        "_children",
        "_conns",
        "_foreign",
        "_made_meanwhile",
        "_port",
        "_timer",
        "_waiter",
        "needs_deadline",
        "pending",
        "reactor",
        "scope",
        "state",
        "timeout",
    )

    def __init__(self, reactor: CleanconnReactor, scope: str, timeout: float) -> None:
        self.reactor = reactor
        self.scope = scope
        self.timeout = timeout
        self.state = GATHERING
        #: How many connections and Deferreds are not done yet.
        self.pending = 0
        #: Whether something pending may never finish by itself.
        self.needs_deadline = False
        self._conns: list[Tracked] = []
        #: Client transports other code opened, each with its hook (or
        #: ``None`` once lost).
        self._foreign: dict[Any, tuple[Any, Any] | None] = {}
        self._port: Deferred[Any] | None = None
        self._address: object = None
        self._aborted: list[ConnectionReport] = []
        #: Child processes waited for, and whether each had to be killed.
        self._children: dict[Any, bool] = {}
        self._timer: IDelayedCall | None = None
        self._waiter: Deferred[None] | None = None
        self._made_meanwhile: Callable[[], Iterable[Tracked]] | None = None

    def close(self, conns: Iterable[Tracked]) -> None:
        """
        Close each of ``conns`` not lost yet, and wait for it, within the
        deadline. (Every close needs it: even with nothing left in
        Twisted's buffer, a close finishes only once the socket is writable,
        which a peer that never reads can stop for good.)
        """
        for conn in conns:
            if not conn.lost:
                try:  # noqa: SIM105 - cheaper than suppress() on the hot path
                    conn.transport.loseConnection()
                except Exception:  # an odd transport: the deadline aborts it
                    pass
                if not conn.lost:  # some transports lose it inside the call
                    self._conns.append(conn)
                    self.pending += 1
                    self.needs_deadline = True
                    conn.when_lost(self._one)

    def wait_for_foreign(self, transport: Any) -> None:
        """
        Wait, within the deadline, for the ``connectionLost`` of a client
        ``transport`` that other code opened (seen by hooking that method
        on the instance, and unhooking it after). It is never aborted: one
        still open at the deadline is reported.
        """
        if transport in self._foreign:
            return
        original = transport.connectionLost
        # What the instance itself had (a test's patch, another hook), to
        # put back: unhooking must not delete it.
        previous = vars(transport).get("connectionLost")

        def hooked(reason: object) -> object:
            try:
                return original(reason)
            finally:
                self._unhook(transport)
                if self._foreign.get(transport) is not None:
                    self._foreign[transport] = None
                    self._one()

        transport.connectionLost = hooked
        self._foreign[transport] = (hooked, previous)
        self.pending += 1
        self.needs_deadline = True

    def _unhook(self, transport: Any) -> None:
        entry = self._foreign.get(transport)
        if entry is None:
            return
        hook, previous = entry
        if vars(transport).get("connectionLost") is hook:
            if previous is None:
                del transport.connectionLost
            else:
                transport.connectionLost = previous

    def wait_for(self, stopped: Deferred[Any], address: object, bounded: bool) -> None:
        """
        Wait for ``stopped``, a listening port's stop (at ``address``);
        ``bounded`` when it is sure to fire soon, so needs no deadline.
        """
        if stopped.called:
            return
        self._port = stopped
        self._address = address
        self.pending += 1
        if not bounded:
            self.needs_deadline = True
        stopped.addBoth(self._one)  # its failure is the port's to report

    def wait_for_child(self, child: Any) -> None:
        """
        Wait, within the deadline, for a child process of
        :func:`~cleanconn.spawned` that was asked to stop: past the
        deadline it is killed (``child._kill()``) and reported
        (``child._report(timeout)``). ``child._when_ended(callback)`` says
        when it has ended (reaped, every pipe closed).
        """
        if child.ended:
            return
        self._children[child] = False
        self.pending += 1
        self.needs_deadline = True
        child._when_ended(self._one)

    def settle(self, made_meanwhile: Callable[[], Iterable[Tracked]]) -> None:
        """
        Wait one reactor turn first, for what Twisted finishes on its next
        turn: the socket and timer of a connect that was cancelled or
        stopped (an endpoint's canceller fails the connect before the
        connector has stopped), or a connection being made as the entry
        failed (the user's ``buildProtocol`` or ``connectionMade`` on the
        stack). Then close what ``made_meanwhile()`` returns, as
        :meth:`close` does; and once all is closed, wait one more turn,
        for the connectors of the connections closed last.
        """
        self._made_meanwhile = made_meanwhile

    @property
    def settling(self) -> bool:
        """Whether :meth:`wait` waits a reactor turn first (:meth:`settle`)."""
        return self._made_meanwhile is not None

    async def wait(self) -> list[BaseException]:
        """
        Wait until all is closed; the errors of the wait (``CleanupTimeout``,
        ``CancelledError``), for the scope's exit to raise or report. (A
        scope skips it when nothing is :attr:`pending` and nothing is to
        :meth:`settle`.)
        """
        errors: list[BaseException] = []
        made_meanwhile, self._made_meanwhile = self._made_meanwhile, None
        if made_meanwhile is not None:
            await self._whole_turn(errors)
            closing = set(self._conns)
            self.close([conn for conn in made_meanwhile() if conn not in closing])
        if self.pending > 0:
            self.state = WAITING
            waiter = self._waiter = Deferred()
            if errors:  # the turn was cancelled: as a cancelled wait does
                await self._cancelled()
            else:
                if self.needs_deadline:
                    self._timer = self.reactor.callLater(self.timeout, self._expire)
                try:
                    await waiter
                except CancelledError as e:
                    errors.append(e)
                    await self._cancelled()
                except CleanupTimeout as e:
                    errors.append(e)
        self.state = DONE
        if made_meanwhile is not None:
            # The last connectionLost resumed this wait from inside
            # Twisted's stack: its connector stops on the way out.
            await self._settle(errors)
        return errors

    async def _cancelled(self) -> None:
        """
        The wait was cancelled, which failed its waiter at once. Abort what
        is left (unless the deadline already did), and wait on new waiters
        until it is over, however often the wait is cancelled again: the
        grace period bounds it.
        """
        state, self.state = self.state, CANCELLED
        if state == WAITING:
            self._abort()
        while self._waiter is not None:
            waiter = self._waiter = Deferred()
            with contextlib.suppress(CancelledError):
                await waiter

    async def _whole_turn(self, errors: list[BaseException]) -> None:
        """
        Wait one reactor turn, whole: a cancel is recorded in ``errors``
        (the first one), not obeyed, so that what is being made when the
        exit starts has been made when the turn is over.
        """
        passed = False
        waiter: Deferred[None] | None = None

        def turned() -> None:
            nonlocal passed
            passed = True
            if waiter is not None and not waiter.called:
                waiter.callback(None)

        self.reactor.callLater(0, turned)
        while not passed:
            waiter = Deferred()
            try:
                await waiter
            except CancelledError as e:
                if not errors:
                    errors.append(e)

    async def _settle(self, errors: list[BaseException]) -> None:
        """Wait one reactor turn (see :meth:`settle`)."""
        turn: Deferred[None] = Deferred()
        call = self.reactor.callLater(0, turn.callback, None)
        try:
            await turn
        except CancelledError as e:
            call.cancel()
            errors.append(e)

    def _one(self, _: object = None) -> None:
        self.pending -= 1
        if self.pending <= 0 and self.state != GATHERING:
            self._finish()

    def _expire(self) -> None:
        self._timer = None
        self.state = EXPIRED
        self._abort()

    def _abort(self) -> None:
        """Abort what is left; stop waiting :data:`ABORT_GRACE` s later."""
        timer = self._timer
        if timer is not None and timer.active():
            timer.cancel()
        port_done = self._port is None or self._port.called
        children = self._children
        if (
            port_done
            and all(conn.lost for conn in self._conns)
            and all(child.ended for child in children)
        ):
            # Only client ends other code opened are left: never aborted,
            # so nothing to give a grace period to.
            self._timer = None
            self._finish()
            return
        # Bound the aborts first: one of them may raise, or finish at once.
        self._timer = self.reactor.callLater(ABORT_GRACE, self._finish)
        for conn in self._conns:
            if not conn.lost:
                self._aborted.append(conn.report())
                with contextlib.suppress(Exception):  # reported, not raised
                    abort(conn.transport)
        for child in children:
            if not child.ended:
                children[child] = True
                child._kill()

    def _finish(self) -> None:
        """All is closed, or the grace period is over: fire the waiter."""
        state, self.state = self.state, DONE
        if state == DONE:
            return
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()
        foreign_left = []
        if self._foreign:
            foreign_left = [t for t, hook in self._foreign.items() if hook]
            for transport in foreign_left:
                self._unhook(transport)
            self._foreign = {}
        waiter, self._waiter = self._waiter, None
        if waiter is None or waiter.called:
            return
        port_left = self._port is not None and not self._port.called
        killed = [child for child, was in self._children.items() if was]
        if state == EXPIRED and (self._aborted or port_left or foreign_left or killed):
            # Something had to be aborted, or never stopped: say what, and
            # what is still open (a report that says "closed" must be true).
            address = self._address if port_left else None
            unclosed = [conn.report() for conn in self._conns if not conn.lost]
            waiter.errback(
                CleanupTimeout(
                    self.scope,
                    self.timeout,
                    self._aborted,
                    address,
                    unclosed,
                    [report_transport(t, "client") for t in foreign_left],
                    [child._report(self.timeout) for child in killed],
                )
            )
        else:
            waiter.callback(None)


def report_transport(transport: Any, side: str) -> ConnectionReport:
    """Describe a connection cleanconn did not make, from its transport."""
    protocols = protocols_of(transport)
    return report_of(transport, side, type(protocols[-1] if protocols else None))


def abort(transport: Any) -> None:
    """
    Close ``transport`` at once: ``abortConnection()``, or for a child
    process's transport (which has none) kill the process.
    """
    abort_connection = getattr(transport, "abortConnection", None)
    if abort_connection is not None:
        abort_connection()
        return
    signal_process = getattr(transport, "signalProcess", None)
    if signal_process is not None:
        signal_process("KILL")
        return
    transport.loseConnection()  # all there is; if it does not close, it is said


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


def merge_errors(body: BaseException | None, cleanup: BaseException) -> None:
    """
    Make a cleanup failure visible without replacing the body's exception.

    With no body exception the cleanup failure is raised; otherwise it is
    attached to the body's exception as a note (and kept as an attribute).
    """
    if body is None:  # pragma: no cover - every caller has a body
        raise cleanup
    name = type(cleanup).__name__
    add_note(body, f"cleanconn: also, during cleanup: {name}: {cleanup}")
    errors = [*cleanup_errors_of(body), cleanup]
    with contextlib.suppress(Exception):  # see add_note()
        body.cleanconn_cleanup_errors = errors  # type: ignore[attr-defined]


def add_note(error: BaseException, note: str) -> None:
    """
    Add ``note`` to ``error`` (Python 3.11 and later), never raising.

    The user's exception must go on as it is, never be replaced: a type
    that refuses attributes refuses notes too, and its attributes may be
    anything (a ``__getattr__`` that raises, or answers for every name).
    """
    with contextlib.suppress(Exception):
        error.add_note(note)  # type: ignore[attr-defined,unused-ignore]


def cleanup_errors_of(error: BaseException | None) -> list[BaseException]:
    """The cleanup errors :func:`merge_errors` attached to ``error`` (none
    if it has none, or if its attributes are not to be trusted); never
    raises, as :func:`add_note`."""
    try:
        found = list(getattr(error, "cleanconn_cleanup_errors", ()))
    except Exception:
        return []
    return [each for each in found if isinstance(each, BaseException)]
