"""
``clean_reactor()``: trial's dirty-reactor check without trial, and stricter.

How it sees what was left behind
================================

At entry it takes a snapshot: the reactor's readers and writers
(``getReaders()``, ``getWriters()``) and its pending DelayedCalls
(``getDelayedCalls()``). At exit it takes the same snapshot again and
reports what is new. Comparing with the entry snapshot, not with an empty
reactor, is what keeps the reactor's own machinery out of the report; the
wakers and the reactor's other internal readers are also filtered out by
identity (``reactor.waker``, ``reactor._internalReaders``) and by type, in
case one is installed inside the block (the asyncio reactor keeps its own
loop machinery outside Twisted's sets entirely). A DelayedCall or
connection made before the block is in the entry snapshot and never
reported. trial's timeout call for the running test is made just *after*
the test method starts, so a scope at the top of a test cannot have it in
its snapshot: it is recognised by its function (trial's ``onTimeout``; by
name, without importing trial) and never reported.

A connection that paused reading (``pauseProducing()``, ``stopReading()``)
is not among the readers: that is trial's blind spot. To see it without
scanning the heap, the scope watches the reactor while it is active:
``reactor.removeReader`` and ``reactor.removeWriter`` are wrapped (on the
reactor instance, only while at least one ``clean_reactor()`` is active)
to remember, in a ``WeakSet``, each selectable taken off the reactor. At
exit, a remembered selectable that is still open (not ``disconnected`` and
with a real ``fileno()``) is reported as paused. This costs one extra call
and a weak reference per ``removeReader``/``removeWriter`` inside the
block, nothing outside it, and it catches what ``removeAll()`` unregistered
without closing too. The alternatives were worse: ``gc.get_objects()``
finds every live ``FileDescriptor`` but costs a full heap walk per test
(milliseconds, growing with the heap); patching ``FileDescriptor`` itself
would change every Twisted class for the whole process; ``/proc/self/fd``
is Linux-only and cannot say which Twisted object owns a descriptor.
Known limit: a connection already paused at entry (so in neither snapshot)
and resumed and paused again inside the block is reported as new.

Why it does not iterate the reactor before checking
===================================================

trial runs ``reactor.iterate(0)`` twice before it looks. That hides a
missing wait (a ``stopListening()`` not awaited, a ``loseConnection()``
whose ``connectionLost`` nobody waited for), which then becomes a flaky
failure elsewhere; and it cannot be done from inside a running reactor
(the asyncio loop refuses to run re-entrantly). A test that waited for
what it closed has nothing in progress at the end of its block, so the
check runs at once: a leak is a leak, not a race.

Why it cleans up what it found
==============================

A leaked listening port or connection poisons the tests after it (a UNIX
socket file blocks the next ``listen``, an unread connection holds a file
descriptor), so one leak becomes many confusing failures. Before raising,
the scope therefore closes what it reports, graceful or not: it aborts
leaked connections, stops leaked listening ports, kills the child process
behind a leaked process pipe (as trial does), waits (bounded by
:data:`~cleanconn._teardown.ABORT_GRACE` seconds, in reactor turns) until
each is closed, and then cancels the leaked DelayedCalls still pending
(closing first, because an in-flight close is itself a DelayedCall).
What still did not close is removed from the reactor and listed as
``unclosed``. The error is raised all the same: cleaning up is about the
next test, not about forgiving this one.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any

from twisted.internet.defer import maybeDeferred
from twisted.internet.interfaces import IDelayedCall, IListeningPort, IProcessTransport
from twisted.internet.task import deferLater

from ._addresses import format_address as _fmt
from ._errors import DirtyReactorError
from ._reactor import CleanconnReactor, default_reactor
from ._scope import enter_once
from ._teardown import ABORT_GRACE, merge_errors

_MISSING: Any = object()
_WRAPPED = ("removeReader", "removeWriter")


# What the janitor says about what it found -------------------------------


def describe_leftovers(
    selectables: Sequence[object],
    delayed_calls: Sequence[object],
    paused: Sequence[object] = (),
) -> list[str]:
    """
    One line per leftover for :class:`DirtyReactorError`.

    Call it before cleaning up: a closed connection forgets its addresses
    and protocol, and a cancelled DelayedCall its function.
    """
    lines = [
        describe_selectable(s, paused=any(p is s for p in paused)) for s in selectables
    ]
    lines.extend(f"delayed call {c}" for c in delayed_calls)
    return lines


def describe_selectable(selectable: object, *, paused: bool = False) -> str:
    """
    Say what a reactor selectable is: its kind, addresses and protocol.

    Only reads attributes Twisted's file descriptors have; anything missing
    is left out, so any object can be described.
    """
    host = _call(selectable, "getHost")
    peer = _call(selectable, "getPeer")
    if getattr(selectable, "stopListening", None) is not None:
        text = "listening port"
        if host is not None:
            text += f" on {_fmt(host)}"
        factory = getattr(selectable, "factory", None)
        if factory is not None:
            text += f" (factory {type(factory).__qualname__})"
    elif peer is not None:
        text = f"connection {_fmt(host)} -> {_fmt(peer)}"
        protocol = _innermost(getattr(selectable, "protocol", None))
        if protocol is not None:
            text += f" (protocol {type(protocol).__qualname__})"
    else:
        text = "selectable"
        pid = getattr(getattr(selectable, "proc", None), "pid", None)
        if pid is not None:
            text = f"pipe of child process {pid}"
    if paused:
        text += ", paused: open but neither reading nor writing"
    return f"{text}: {selectable!r}"


def _call(obj: object, name: str) -> object:
    method = getattr(obj, name, None)
    if method is None:
        return None
    try:
        return method()
    except Exception:
        return None


def _innermost(protocol: object) -> object:
    """The user's protocol under wrappers (TLS, endpoints, cleanconn)."""
    for _ in range(10):
        inner = None
        for name in ("wrappedProtocol", "_wrappedProtocol", "wrapped"):
            inner = getattr(protocol, name, None)
            if inner is not None:
                break
        if inner is None:
            break
        protocol = inner
    return protocol


class _Watch:
    """
    Remembers, for one reactor, what was taken off it while scopes are active.

    Installed on the reactor instance by the first active scope and removed
    by the last one; if something else wrapped the same methods since, the
    wrappers stay in place (doing nothing but forward) rather than undo that.
    """

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.scopes = 0
        self.removed: weakref.WeakSet[Any] = weakref.WeakSet()
        self._saved: dict[str, Any] = {}
        self._wrappers: dict[str, Callable[[Any], Any]] = {}

    def start(self) -> None:
        if not self._wrappers:
            self._install()
        self.scopes += 1

    def stop(self) -> None:
        self.scopes -= 1
        if self.scopes == 0:
            self.removed.clear()
            self._uninstall()

    def _install(self) -> None:
        reactor = self.reactor
        try:
            attributes = vars(reactor)
        except TypeError:  # no instance dict: watch nothing, check the rest
            return
        for name in _WRAPPED:
            original = getattr(reactor, name, None)
            if original is None:
                continue
            self._saved[name] = attributes.get(name, _MISSING)
            wrapper = self._wrapper(original)
            self._wrappers[name] = wrapper
            setattr(reactor, name, wrapper)

    def _wrapper(self, original: Callable[[Any], Any]) -> Callable[[Any], Any]:
        removed = self.removed

        def remove(selectable: Any) -> Any:
            if self.scopes:
                # Not weakly referenceable: not a Twisted FileDescriptor.
                with contextlib.suppress(TypeError):
                    removed.add(selectable)
            return original(selectable)

        return remove

    def _uninstall(self) -> None:
        attributes = vars(self.reactor)
        for name, wrapper in list(self._wrappers.items()):
            if attributes.get(name) is not wrapper:
                continue  # wrapped again by someone else: stay, inert
            saved = self._saved.pop(name)
            if saved is _MISSING:
                delattr(self.reactor, name)
            else:
                setattr(self.reactor, name, saved)
            del self._wrappers[name]
        if not self._wrappers:
            _watches.pop(id(self.reactor), None)


#: One watch per reactor with an active scope (or inert wrappers left).
_watches: dict[int, _Watch] = {}


def _watch(reactor: Any) -> _Watch:
    watch = _watches.get(id(reactor))
    if watch is None:
        watch = _watches[id(reactor)] = _Watch(reactor)
    return watch


def _machinery(reactor: Any) -> set[int]:
    """Identities of the reactor's own readers (wakers) known by name."""
    own: set[int] = set()
    for name in ("waker", "_childWaker"):
        obj = getattr(reactor, name, None)
        if obj is not None:
            own.add(id(obj))
    own.update(id(obj) for obj in getattr(reactor, "_internalReaders", ()))
    return own


def _is_machinery(selectable: object, own: set[int]) -> bool:
    if id(selectable) in own:
        return True
    cls = type(selectable)
    return cls.__name__.endswith("Waker") and cls.__module__.startswith(
        "twisted.internet."
    )


def _is_machinery_call(call: IDelayedCall) -> bool:
    """
    trial's own timeout call for the running test.

    trial schedules it just *after* the test method starts running, so a
    scope entered at the top of a test does not have it in its snapshot. It
    is recognised by name (no trial import): ``TestCase._run``'s
    ``onTimeout``, wrapped with ``functools.wraps``.
    """
    func = getattr(call, "func", None)
    return getattr(func, "__name__", None) == "onTimeout" and str(
        getattr(func, "__module__", "")
    ).startswith("twisted.trial.")


def _is_open(selectable: Any) -> bool:
    """A Twisted file descriptor that has not been closed yet."""
    if getattr(selectable, "disconnected", False):
        return False
    try:
        return bool(selectable.fileno() != -1)
    except Exception:
        return False


def _registered(reactor: Any) -> dict[int, Any]:
    found: dict[int, Any] = {}
    for selectable in [*reactor.getReaders(), *reactor.getWriters()]:
        found[id(selectable)] = selectable
    return found


class _CleanReactor:
    def __init__(self, reactor: CleanconnReactor | None) -> None:
        self._reactor: Any = default_reactor(reactor)
        for needed in ("getReaders", "getWriters", "getDelayedCalls"):
            if getattr(self._reactor, needed, None) is None:
                raise TypeError(
                    f"clean_reactor() needs a reactor with {needed}() "
                    "(IReactorFDSet and IReactorTime, as every Twisted "
                    f"reactor has); got {self._reactor!r}"
                )
        self._entered = False
        self._watch: _Watch | None = None
        self._selectables: dict[int, Any] = {}
        self._calls: dict[int, IDelayedCall] = {}

    async def __aenter__(self) -> None:
        enter_once(self._entered, "clean_reactor()")
        self._entered = True
        reactor = self._reactor
        watch = self._watch = _watch(reactor)
        self._selectables = _registered(reactor)
        # What an enclosing scope saw paused is also not new here.
        for selectable in list(watch.removed):
            if _is_open(selectable):
                self._selectables[id(selectable)] = selectable
        self._calls = {id(call): call for call in reactor.getDelayedCalls()}
        watch.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._watch is not None
        try:
            selectables, paused, calls = self._leftovers()
        finally:
            self._watch.stop()
            self._selectables = {}
            self._calls = {}
        if not selectables and not calls:
            return
        described = describe_leftovers(selectables, calls, paused)
        unclosed = await _clean_up(self._reactor, selectables, calls)
        error = DirtyReactorError(
            selectables, calls, paused=paused, unclosed=unclosed, described=described
        )
        if exc is not None:
            merge_errors(exc, error)
            return
        raise error

    def _leftovers(self) -> tuple[list[Any], list[Any], list[IDelayedCall]]:
        reactor = self._reactor
        assert self._watch is not None
        own = _machinery(reactor)
        before = self._selectables
        registered = _registered(reactor)
        selectables = [
            s
            for key, s in registered.items()
            if key not in before and not _is_machinery(s, own)
        ]
        paused = [
            s
            for s in list(self._watch.removed)
            if id(s) not in before
            and id(s) not in registered
            and _is_open(s)
            and not _is_machinery(s, own)
        ]
        calls = [
            call
            for call in reactor.getDelayedCalls()
            if id(call) not in self._calls
            and call.active()
            and not _is_machinery_call(call)
        ]
        return selectables + paused, paused, calls


async def _clean_up(
    reactor: Any, selectables: list[Any], calls: list[IDelayedCall]
) -> list[Any]:
    """
    Close ``selectables`` and wait, then cancel ``calls`` still pending.

    :return: the selectables that did not close within ``ABORT_GRACE``
        seconds; they have been removed from the reactor.
    """
    for selectable in selectables:
        _close(selectable)
    deadline = reactor.seconds() + ABORT_GRACE
    try:
        while any(_is_open(s) for s in selectables) and reactor.seconds() < deadline:
            await deferLater(reactor, 0, lambda: None)
    finally:
        unclosed = [s for s in selectables if _is_open(s)]
        for selectable in unclosed:
            reactor.removeReader(selectable)
            reactor.removeWriter(selectable)
        for call in calls:
            if call.active():
                call.cancel()
    return unclosed


def _close(selectable: Any) -> None:
    """Start closing a leaked selectable, as abruptly as it allows."""
    if not _is_open(selectable):
        return
    # A child process (one of its pipes, or a PTY process itself): kill it,
    # as trial does, or it outlives the test.
    process = selectable if IProcessTransport.providedBy(selectable) else None
    if process is None and IProcessTransport.providedBy(
        getattr(selectable, "proc", None)
    ):
        process = selectable.proc
    if process is not None:
        with contextlib.suppress(Exception):  # ProcessExitedAlready
            process.signalProcess("KILL")
    try:
        if IListeningPort.providedBy(selectable):
            if getattr(selectable, "disconnecting", False):
                return  # stopListening() already in flight; twice would break
            result = maybeDeferred(selectable.stopListening)
            result.addErrback(lambda _: None)
        elif getattr(selectable, "abortConnection", None) is not None:
            selectable.abortConnection()
        elif getattr(selectable, "loseConnection", None) is not None:
            selectable.loseConnection()
    except Exception:
        pass  # reported as unclosed if it stays open


def clean_reactor(
    *, reactor: CleanconnReactor | None = None
) -> AbstractAsyncContextManager[None]:
    """
    Fail if the ``async with`` block leaves anything on the reactor.

    .. code-block:: python

        async with clean_reactor():
            async with serving(EchoFactory()) as port:
                ...
        # raises DirtyReactorError if a port, a connection (even a paused
        # one) or a DelayedCall made inside the block is still there

    At entry the reactor's readers, writers and pending DelayedCalls are
    noted; at exit, every selectable and DelayedCall that was not there at
    entry is reported by :class:`~cleanconn.DirtyReactorError`, including a
    connection that paused reading, which trial's janitor cannot see. The
    reactor's own machinery (wakers) and anything that existed before the
    block are never reported. It does not need trial: use it in
    pytest-twisted tests (see :mod:`cleanconn.pytest_plugin` to wrap every
    test), ``task.react`` scripts, or inside trial tests.

    There is no grace period: the check runs as soon as the block ends, so
    a close that was started but not waited for is reported. Before
    raising, what was found is closed (connections aborted, ports stopped,
    each waited for) and the DelayedCalls cancelled, so the next test is not
    poisoned. If the block raised, that exception propagates unchanged and
    the report is attached to it as a note.

    :param reactor: the reactor to check; the global one by default.
    :raises DirtyReactorError: at exit, if anything was left behind.
    :raises TypeError: ``reactor`` cannot list its readers, writers and
        DelayedCalls.
    """
    return _CleanReactor(reactor)
