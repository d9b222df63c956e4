"""
``deadline()``: a time limit for an ``async def`` function that cancels it
where it is stuck, lets every scope inside exit, and says where that was.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import linecache
import os
from collections.abc import Callable, Coroutine
from types import CodeType, FrameType
from typing import Any, ParamSpec, TypeVar

import twisted
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall

from ._addresses import format_address
from ._errors import DeadlineExceeded, WaitingAt
from ._reactor import CleanconnReactor, default_reactor
from ._scope import DEFAULT_TIMEOUT, Scope, check_timeout, local_of
from ._teardown import cleanup_errors_of

_P = ParamSpec("_P")
_T = TypeVar("_T")

#: How many links of an await chain :func:`waiting_at` follows at most.
_MAX_DEPTH = 200


#: Why a deadline's seconds must be finite, for the error.
_WHY = "a deadline that never passes bounds nothing"


class Limit:
    """
    What one :func:`deadline` says: how long, the grace, the reactor.

    :ivar seconds: the deadline, in seconds from the call.
    :ivar grace: seconds a cancelled body is given to end, twice (once
        after the first cancellation, once after the second).
    :ivar reactor: the reactor given, or ``None`` for the global one.
    """

    __slots__ = ("grace", "reactor", "seconds")

    def __init__(
        self,
        seconds: float,
        grace: float | None = None,
        reactor: CleanconnReactor | None = None,
    ) -> None:
        self.seconds = check_timeout(seconds, "deadline()", "seconds", _WHY)
        self.grace = (
            min(self.seconds, DEFAULT_TIMEOUT)
            if grace is None
            else check_timeout(grace, "deadline()", "grace", _WHY)
        )
        self.reactor = reactor

    def longest(self) -> float:
        """Seconds after which a call under this limit has surely ended."""
        return self.seconds + 2 * self.grace


def deadline(
    seconds: float,
    *,
    grace: float | None = None,
    reactor: CleanconnReactor | None = None,
) -> Callable[
    [Callable[_P, Coroutine[Any, Any, _T]]], Callable[_P, Coroutine[Any, Any, _T]]
]:
    """
    Give an ``async def`` function (or test method) ``seconds`` to finish.

    .. code-block:: python

        class EchoTests(TestCase):
            @deadline(5)
            async def test_echo(self):
                async with serving(EchoFactory()) as port:
                    async with connected(port, ClientFactory()) as client:
                        await client.reply  # never comes? 5 s, then a clean unwind

    When the function runs longer, it is cancelled at the ``await`` it is
    stuck in: ``CancelledError`` is thrown in there, so every ``async
    with`` scope it is in exits as it does on cancellation (each bounded by
    its own ``timeout``). Then the call raises :class:`DeadlineExceeded`,
    which is a :class:`twisted.internet.defer.TimeoutError` too, naming the
    function, the line of your code it was stuck on, what it awaited
    there, and whether the scopes closed.

    A function that catches the ``CancelledError`` and goes on waiting is
    cancelled again after ``grace`` seconds (a scope's exit that is
    cancelled aborts what is left at once, and still waits for it). If it
    still has not ended ``grace`` seconds after that, it is abandoned: the
    call raises :class:`DeadlineExceeded` with ``abandoned`` set, and the
    function stays suspended where it was. So a call always ends within
    ``seconds + 2 * grace``.

    The cost when the deadline does not pass is one ``DelayedCall``,
    cancelled when the function ends, and one coroutine frame. Deadlines
    nest: the one that passes first cancels, and its error names it. An
    exception the function raises in time goes through unchanged.

    :param seconds: how long the function may run, from the call.
    :param grace: how long a cancelled function is given to end, before it
        is cancelled again, and then before it is abandoned. By default the
        smaller of ``seconds`` and :data:`DEFAULT_TIMEOUT`.
    :param reactor: the reactor whose clock counts, by default the global
        one.
    :raises TypeError: the decorated function is not an ``async def``
        function.
    """
    limit = Limit(seconds, grace, reactor)

    def decorate(
        function: Callable[_P, Coroutine[Any, Any, _T]],
    ) -> Callable[_P, Coroutine[Any, Any, _T]]:
        if not inspect.iscoroutinefunction(function):
            raise TypeError(
                f"deadline() decorates an async def function, got {function!r}: "
                "only a coroutine can be cancelled where it waits"
            )
        return limited(function, limit)

    return decorate


def limited(
    function: Callable[_P, Coroutine[Any, Any, _T]], limit: Limit
) -> Callable[_P, Coroutine[Any, Any, _T]]:
    """``function``, run under ``limit`` (what :func:`deadline` makes)."""

    @functools.wraps(function)
    async def deadline_wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        coro = function(*args, **kwargs)
        # The timer is armed before the body starts, so that a
        # clean_reactor() at its top sees it as there before its block.
        watch = _Watch(limit, coro)
        body: Deferred[_T] = Deferred.fromCoroutine(coro)
        watch.body = body
        if body.called:  # it did not wait: nothing to time
            watch.timer.cancel()
            return await body
        try:
            result = await body
        except BaseException as e:
            if not watch.stage:
                raise
            cause = None if isinstance(e, CancelledError) else e
            raise watch.exceeded(e, function) from cause
        finally:
            timer = watch.timer  # the body ended (or was abandoned)
            if timer.active():
                timer.cancel()
        if watch.stage:  # it swallowed the cancellation and returned
            raise watch.exceeded(None, function)
        return result

    return deadline_wrapper


#: What a watch's body is until it starts.
_NOT_STARTED: Deferred[Any] = Deferred()


class _Watch:
    """
    One call under a deadline: the timer, and what happened when it fired.

    :ivar stage: 0 while the deadline has not passed; 1 once the body was
        cancelled; 2 once it was cancelled again; 3 once abandoned.
    """

    __slots__ = (
        "body",
        "coro",
        "ignored",
        "limit",
        "reactor",
        "stage",
        "timer",
        "waiting",
    )

    def __init__(self, limit: Limit, coro: Coroutine[Any, Any, Any]) -> None:
        self.limit = limit
        self.coro = coro
        #: The body's Deferred, once it started (before, nothing cancels it).
        self.body: Deferred[Any] = _NOT_STARTED
        self.stage = 0
        self.waiting: WaitingAt | None = None
        self.ignored: WaitingAt | None = None
        reactor = limit.reactor
        self.reactor = reactor if reactor is not None else default_reactor(None)
        self.timer: IDelayedCall = self.reactor.callLater(limit.seconds, self._expire)

    def _expire(self) -> None:
        self.stage += 1
        # Where it waits, before cancelling: cancelling unwinds it.
        if self.stage == 1:
            self.waiting = waiting_at(self.coro)
        elif self.stage == 2:
            self.ignored = waiting_at(self.coro)
        else:
            self._abandon()
            return
        # Armed before cancelling: the body may end inside cancel().
        self.timer = self.reactor.callLater(self.limit.grace, self._expire)
        self.body.cancel()  # forwarded to what it waits on, if cancelled before

    def _abandon(self) -> None:
        """
        Stop waiting for a body that ignored two cancellations: fail the
        last link of its chain, which the body would fire when it ends
        (and which then ignores that, as a cancelled Deferred does).
        """
        link: Deferred[Any] = self.body
        while link.called and isinstance(link.result, Deferred):
            link = link.result
        if link.called:  # pragma: no cover - the body ended meanwhile
            return
        link._suppressAlreadyCalled = True
        link.errback(CancelledError())

    def exceeded(
        self, error: BaseException | None, function: Callable[..., Any]
    ) -> DeadlineExceeded:
        """The error for a call whose deadline passed."""
        cleanup = cleanup_errors_of(error)
        return DeadlineExceeded(
            getattr(function, "__qualname__", repr(function)),
            self.limit.seconds,
            self.waiting,
            self.limit.grace,
            ignored=self.ignored,
            abandoned=self.stage >= 3,
            cleanup_errors=cleanup,
        )


# Finding where a coroutine waits ---------------------------------------------


# It runs only at import, before mutmut picks a mutant: no mutant of it can
# run, so none is made.
def _directory(module: Any) -> str:  # pragma: no mutate block
    return os.path.dirname(os.path.abspath(str(module.__file__))) + os.sep


#: Code under these is not the user's: cleanconn's, Twisted's, asyncio's.
_NOT_USERS = (
    os.path.dirname(os.path.abspath(__file__)) + os.sep,
    _directory(twisted),
    _directory(asyncio),
)
_CONTEXTLIB = os.path.abspath(contextlib.__file__)


async def _noop() -> None:  # pragma: no cover - only its wrapper's code is used
    pass


#: The code of every deadline's wrapper, and of ``Deferred.__iter__`` (what
#: awaiting a Deferred runs, in newer Twisted).
_WRAPPER_CODE = limited(_noop, Limit(1)).__code__
_DEFERRED_ITER_CODE = getattr(Deferred.__iter__, "__code__", None)
#: ``Scope.within``'s code, under any wrapper that says what it wraps; a
#: frame is known as its own by that code, or by its file (as compiled, the
#: same for every code object of the module) and parameters: a wrapper (a
#: tracer's, or a mutation tester's) may run a copy of the method.
_WITHIN_CODE = inspect.unwrap(Scope.within).__code__
_WITHIN_PARAMETERS = frozenset({"self", "ready", "waiting", "conn"})


def _is_within(code: CodeType) -> bool:
    return code is _WITHIN_CODE or (
        code.co_filename == _WITHIN_CODE.co_filename
        and _WITHIN_PARAMETERS.issubset(code.co_varnames[: code.co_argcount])
    )


def _is_users(filename: str) -> bool:
    path = os.path.abspath(filename)
    return not path.startswith(_NOT_USERS) and path != _CONTEXTLIB


def _frame_of(awaitable: object) -> FrameType | None:
    for name in ("cr_frame", "gi_frame", "ag_frame"):
        frame = getattr(awaitable, name, None)
        if isinstance(frame, FrameType):
            return frame
    return None


def _cells(function: object) -> list[object]:
    contents = []
    for cell in getattr(function, "__closure__", None) or ():
        with contextlib.suppress(ValueError):  # an empty cell
            contents.append(cell.cell_contents)
    return contents


def _behind(deferred: Deferred[Any]) -> object:
    """
    What a Deferred waits on: the Deferred it is chained to, or the
    coroutine (or ``inlineCallbacks`` generator) whose result it is, found
    through Twisted's cancellation status of that coroutine. ``None`` if
    neither.
    """
    if deferred.called:
        result = getattr(deferred, "result", None)
        return result if isinstance(result, Deferred) else None
    canceller = getattr(deferred, "_canceller", None)
    status = None
    for value in _cells(canceller):
        for candidate in (value, *_cells(value)):
            if hasattr(candidate, "waitingOn"):
                status = candidate
                break
    awaited = getattr(status, "waitingOn", None)
    if not isinstance(awaited, Deferred):
        return None
    chains = getattr(awaited, "_callbacks", None)
    if chains is None:  # Twisted before 25.5 (after, ``callbacks`` is deprecated)
        chains = getattr(awaited, "callbacks", None)
    for (callback, args, _), _ in chains or ():
        for value in (*args, *_cells(callback)):
            if _frame_of(value) is not None:
                return value
    return None


def _awaited_in(awaitable: object, frame: FrameType) -> object:
    """What ``awaitable``, suspended in ``frame``, awaits."""
    if frame.f_code is _WRAPPER_CODE:  # a deadline inside: into its body
        return frame.f_locals.get("coro")
    if frame.f_code is _DEFERRED_ITER_CODE:  # awaiting a Deferred
        return frame.f_locals.get("self")
    if frame.f_code.co_filename == _CONTEXTLIB:  # an @asynccontextmanager
        generator = getattr(frame.f_locals.get("self"), "gen", None)
        if _frame_of(generator) is not None:
            return generator
    for name in ("cr_await", "gi_yieldfrom", "ag_await"):
        awaited = getattr(awaitable, name, None)
        if awaited is not None:
            return awaited
    return None


def _scope_waiting(frame: FrameType) -> str:
    """What a scope's entry waits for, from a frame of ``Scope.within``."""
    local = frame.f_locals
    scope = local.get("self")
    waiting = local.get("waiting")
    text = waiting() if callable(waiting) else str(waiting)
    address = local_of(local.get("conn"))
    where = "" if address is None else f" (connection from {format_address(address)})"
    return f"{getattr(scope, 'name', scope)} entering, waiting until {text}{where}"


def waiting_at(coro: object) -> WaitingAt | None:
    """
    Where the suspended coroutine ``coro`` waits: the innermost frame of
    the user's code along its await chain (through coroutines, generators,
    ``@asynccontextmanager`` generators, deadlines, and Deferreds of other
    coroutines), and what it awaits there. ``None`` if there is no user
    frame. It never raises: what it cannot follow, it leaves out.
    """
    user: FrameType | None = None
    awaiting: str | None = None
    current = coro
    try:
        for _ in range(_MAX_DEPTH):
            frame = _frame_of(current)
            if frame is None:
                if isinstance(current, Deferred):
                    inner = _behind(current)
                    if inner is not None:
                        awaiting = awaiting or repr(current)
                        current = inner
                        continue
                if current is not None and awaiting is None:
                    awaiting = repr(current)
                break
            if _is_within(frame.f_code):
                awaiting = awaiting or _scope_waiting(frame)
            elif _is_users(frame.f_code.co_filename):
                user, awaiting = frame, None
            current = _awaited_in(current, frame)
    except Exception:
        pass
    if user is None:
        return None
    filename = user.f_code.co_filename
    lineno = user.f_lineno
    return WaitingAt(
        filename,
        lineno,
        user.f_code.co_name,
        linecache.getline(filename, lineno).strip(),
        awaiting or "something cleanconn could not name",
    )
