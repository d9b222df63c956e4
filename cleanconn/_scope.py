"""
The shape of every scope: enter once, within one deadline; exit through one
path that closes, waits, and lets the body's exception win.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from types import CoroutineType, TracebackType
from typing import ClassVar, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IDelayedCall

from . import _reactor
from ._addresses import key_address, local_key
from ._errors import ConnectionRejected, ConnectTimeout, ReactorNotRunning
from ._reactor import CleanconnReactor, default_reactor
from ._teardown import Closing, finish
from ._tracked import Tracked

_T = TypeVar("_T")
_X = TypeVar("_X")

INFINITY = float("inf")

#: For :meth:`Scope.within`: the factory that built no protocol for a
#: connection, and what it raised, or ``None`` if it built one.
Rejection = Callable[[Tracked], "tuple[object, BaseException | None] | None"]

#: Seconds a scope waits for what its entry needs, and then for graceful
#: closes at its exit before it aborts what is left.
DEFAULT_TIMEOUT = 5.0


def check_timeout(
    timeout: float, where: str, what: str = "timeout", why: str = "it bounds every exit"
) -> float:
    """Validate a number of seconds given as ``what`` to ``where``."""
    if type(timeout) is float and 0 < timeout < INFINITY:
        return timeout
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(
            f"{where}: {what} must be a number of seconds, "
            f"got {type(timeout).__name__} {timeout!r}"
        )
    if not 0 < timeout < INFINITY:  # also rejects NaN
        raise ValueError(
            f"{where}: {what} must be a positive, finite number of seconds "
            f"({why}), got {timeout!r}"
        )
    return float(timeout)


def already_entered(name: str) -> RuntimeError:
    """The error for entering the scope object ``name`` made a second time."""
    return RuntimeError(
        f"this {name} scope was already entered; call {name} again for a new one"
    )


def _will_run(reactor: object) -> bool:
    """
    Whether a reactor that is not running now may yet run the scope: the
    installed global reactor will (trial starts an ``async def`` test before
    it runs the reactor, as ``ensureDeferred(main()); reactor.run()`` does),
    and so may anything that is not a reactor of its own (a proxy of the
    global one). Another reactor, not installed and not running, never will.
    """
    from twisted.internet.base import ReactorBase

    module = sys.modules.get("twisted.internet.reactor")
    return reactor is module or not isinstance(reactor, ReactorBase)


def _any_errors(conns: list[Tracked]) -> bool:
    """Whether the user's callbacks raised on any of ``conns``."""
    for conn in conns:  # noqa: SIM110 - no generator on the hot path
        if conn.errors:
            return True
    return False


def local_of(conn: Tracked | None) -> object:
    """The local address of ``conn`` for a message (from its key: the
    transport may have forgotten it once lost)."""
    return None if conn is None else key_address(conn.key)


class Scope(AbstractAsyncContextManager[_T]):
    """
    Base of every scope: an async context manager entered at most once.

    A scope says only what is particular to it:

    - :meth:`_enter` makes what the block gets (at once, or as a coroutine
      or Deferred that has it later). Everything it waits for
      shares one deadline, ``timeout`` seconds from the start of the entry
      (:meth:`within`, :meth:`left`), and one timer: armed by the first
      wait, cancelled when the entry ends. If it raises, the scope is
      closed as at exit, and its exception goes on.
    - :meth:`_close` closes what the scope owns into a :class:`Closing`
      and drops what refers back to the scope (so it is freed by reference
      counting); the exit waits for it, with one deadline of ``timeout``.
    - :meth:`_closed` runs after the wait, whatever happened: it may add
      errors, and returns the connections whose callbacks' errors to report.

    The exit raises the first cleanup error (``CleanupTimeout``, a
    cancellation, a ``ProtocolError``), unless the body raised: the body's
    exception always wins and carries the cleanup errors as notes.
    """

    #: The scope's name in messages, such as ``"connected()"``.
    name: ClassVar[str]

    # Set on the instance only by an entry that waits (most scopes of the
    # hot path set none of them).
    #: The entry's one timer, armed by its first wait (:meth:`until_deadline`).
    _entry_timer: IDelayedCall | None = None
    #: What the wait of the entry now does at the deadline.
    _on_expire: Callable[[], None] | None = None
    #: Whether the entry's deadline has passed.
    _expired = False

    def __init__(self, reactor: CleanconnReactor | None, timeout: float) -> None:
        if type(timeout) is not float or not 0 < timeout < INFINITY:
            timeout = check_timeout(timeout, self.name)
        self.timeout = timeout
        if reactor is None:
            reactor = _reactor._global_reactor or default_reactor(None)
        self.reactor = reactor
        self._entered = False
        self._deadline = INFINITY

    def __repr__(self) -> str:
        return f"<cleanconn {self.name} scope>"

    # What a scope says ------------------------------------------------------

    def _enter(self) -> _T | Awaitable[_T]:
        """What the block gets: now, or once the returned coroutine or
        Deferred has it."""
        raise NotImplementedError  # pragma: no cover - each scope has its own

    def _close(self, closing: Closing) -> None:
        """Close what the scope owns into ``closing``; release the scope."""

    def _closed(self, errors: list[BaseException]) -> list[Tracked]:
        """After the wait: add to ``errors``; the connections to report."""
        return []

    # The shared shape -------------------------------------------------------

    async def __aenter__(self) -> _T:
        if self._entered:
            raise already_entered(self.name)
        self._entered = True
        reactor = self.reactor
        if not reactor.running and not _will_run(reactor):
            raise ReactorNotRunning(self.name, reactor)
        self._deadline = reactor.seconds() + self.timeout
        try:
            entered = self._enter()
            # Not isinstance(): Deferred is an ABC (an Awaitable), and that
            # check costs a call into abc for everything that is not one.
            later = type(entered)
            if later is CoroutineType or Deferred in later.__mro__:
                entered = await entered  # type: ignore[misc]
        except BaseException as e:
            self._entry_over()
            await self.__aexit__(type(e), e, e.__traceback__, entered=False)
            raise
        if self._entry_timer is not None:
            self._entry_over()
        return entered  # type: ignore[return-value]

    def __enter__(self) -> None:
        raise TypeError(
            f"{self.name} is an async context manager: use `async with "
            f"{self.name[:-2]}(...)` inside an `async def` that runs under "
            "trial, pytest-twisted, or twisted.internet.defer.ensureDeferred "
            "(task.react), not a plain `with`."
        )

    def __exit__(self, *exc_info: object) -> None:
        """Never reached: :meth:`__enter__` refuses a plain ``with``."""

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        entered: bool = True,
    ) -> None:
        """
        Close, wait, and raise the first cleanup error unless the body
        raised (``exc``). With ``entered=False``, the entry failed with
        ``exc``: its callbacks' errors were raised already.
        """
        if not self._entered:
            raise RuntimeError(
                f"this {self.name} scope was never entered, so there is "
                "nothing to exit: use it with `async with`, or enter it "
                "first (cleanconn.enter_scope() does both)."
            )
        closing = Closing(self.reactor, self.name, self.timeout)
        self._close(closing)
        if closing.pending > 0 or closing.settling:
            errors = await closing.wait()
        else:
            errors = []
        report = self._closed(errors)
        if errors or (entered and report and _any_errors(report)):
            finish(exc, errors, report if entered else ())

    # The entry's deadline ---------------------------------------------------

    def _entry_over(self) -> None:
        """The entry has ended: its deadline no longer applies."""
        timer, self._entry_timer = self._entry_timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _entry_expired(self) -> None:
        self._entry_timer = None  # spent: a later wait arms another
        self._expired = True
        expire = self._on_expire
        if expire is not None:
            expire()

    def until_deadline(self, expire: Callable[[], None]) -> None:
        """
        Call ``expire`` at the entry's deadline, unless the wait it is for
        ends first (and sets ``_on_expire`` back to ``None``): the entry
        waits for one thing at a time, and every wait shares the entry's
        one timer (one ``DelayedCall`` for the whole entry, not one per
        wait: each cancelled one stays in the reactor's heap of timers
        until Twisted sweeps it, and makes each turn a little dearer).
        """
        self._on_expire = expire
        if self._entry_timer is None:
            self._entry_timer = self.reactor.callLater(self.left(), self._entry_expired)

    def left(self) -> float:
        """Seconds left until the entry's deadline (a little at least)."""
        return max(self._deadline - self.reactor.seconds(), 0.001)

    def timed_out(self, waiting: str, address: object = None) -> ConnectTimeout:
        """The error for an entry that gave up ``waiting``."""
        return ConnectTimeout(self.name, self.timeout, waiting, address)

    async def within(
        self,
        ready: Deferred[_X],
        waiting: str | Callable[[], str],
        conn: Tracked | None = None,
        rejected_by: Rejection | None = None,
    ) -> _X:
        """
        Wait for ``ready`` until the entry's deadline, then cancel it and
        raise :class:`~cleanconn.ConnectTimeout`. If ``conn`` is lost first
        (or, for a half-closeable protocol such as a stream, is told that
        the peer closed its side), fail at once with
        :class:`~cleanconn.ConnectionRejected` when
        ``rejected_by(conn)`` names the factory that built no protocol for
        it (and what it raised), or else with the reason it was lost
        (``ConnectionRejected`` too for a clean close).

        :param waiting: what is awaited, in words (or a function giving
            them when needed), for the error messages.
        """
        expired = ""  # what it was waiting for, once the deadline passed

        def expire() -> None:
            nonlocal expired
            # In words before cancelling: cancelling changes what is left.
            expired = waiting if isinstance(waiting, str) else waiting()
            ready.cancel()

        def lost(lost_conn: Tracked) -> None:
            if ready.called:
                return
            reason = lost_conn.reason
            rejection = None if rejected_by is None else rejected_by(lost_conn)
            if rejection is None and reason and not reason.check(ConnectionDone):  # type: ignore[no-untyped-call]
                ready.errback(reason)
                return
            factory, error = rejection or (None, None)
            text = waiting if isinstance(waiting, str) else waiting()
            ready.errback(
                ConnectionRejected(self.name, local_of(conn), text, factory, error)
            )

        if conn is not None:
            if conn.key is None:  # the address, while the connection has it
                conn.key = local_key(conn.transport)
            conn.when_lost(lost)
            conn.when_eof(lost)  # a half-closeable one (a stream) sees only this
        self.until_deadline(expire)
        try:
            return await ready
        except Exception as e:
            if expired:
                raise self.timed_out(expired, local_of(conn)) from e
            raise
        finally:
            self._on_expire = None
            if conn is not None:
                conn.forget_lost(lost)  # not kept for the life of the connection
                conn.forget_eof(lost)
