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
A connection already paused at entry (so in neither snapshot) and resumed
inside the block is recognised by its file descriptor: at entry the scope
lists the process's open descriptors (``/proc/self/fd`` or ``/dev/fd``, one
``fstat`` each, some 35 us for a test process), and a selectable whose
descriptor still refers to the same socket (device and inode) predates the
block. Where the system lists no descriptors, such a connection is reported.

What the block did not make
===========================

Only what the block made is reported and closed. A connection accepted by
a listening port that predates the block belongs to the port's owner (an
enclosing ``serving()``), even when the block connected to it. A timer
that predates the block and re-arms inside it (``LoopingCall`` and
``twisted.web``'s log-date timer schedule a new DelayedCall each tick) is
recognised one to one: a new call to the same callable (the same object's
same method, or the same ``LoopingCall``) as an entry call that has since
run or been cancelled; and a ``LoopingCall`` started before the block
(``starttime``) is older whatever its calls. A ``LoopingCall`` started
inside the block has neither, so it is reported, and stopped.

A ``connectTCP()`` nobody waited for shows only as its resolver and timeout
DelayedCalls, bound to its ``tcp.Client``: its connector is found through
them, reported, and stopped with ``stopConnecting()`` (cancelling the calls
alone would leave the socket open and the connector connecting forever).
What could not be closed is named in the report as still open.

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
import os
import types
import weakref
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any

from twisted.internet.defer import maybeDeferred
from twisted.internet.interfaces import (
    IConnector,
    IDelayedCall,
    IListeningPort,
    IProcessTransport,
)
from twisted.internet.task import LoopingCall, deferLater

from ._addresses import format_address as _fmt
from ._errors import DirtyReactorError
from ._reactor import CleanconnReactor, default_reactor
from ._scope import already_entered
from ._teardown import ABORT_GRACE, merge_errors
from ._tracked import TrackingFactory

_MISSING: Any = object()
_WRAPPED = ("removeReader", "removeWriter")


# What the janitor says about what it found -------------------------------


def describe_leftovers(
    selectables: Sequence[object],
    delayed_calls: Sequence[object],
    paused: Sequence[object] = (),
    connecting: Sequence[object] = (),
) -> list[str]:
    """
    One line per leftover for :class:`DirtyReactorError`.

    Call it before cleaning up: a closed connection forgets its addresses
    and protocol, and a cancelled DelayedCall its function.
    """
    lines = [
        describe_selectable(s, paused=any(p is s for p in paused)) for s in selectables
    ]
    lines.extend(describe_connector(c) for c in connecting)
    lines.extend(describe_call(c) for c in delayed_calls)
    return lines


def describe_process(process: object) -> str:
    """Say what a child process that was never reaped is."""
    text = f"child process {getattr(process, 'pid', '?')}"
    protocol = getattr(process, "proto", None)
    if protocol is not None:
        text += f" (protocol {type(protocol).__qualname__})"
    return f"{text}, started in the block and never waited for (not reaped)"


def describe_call(call: object) -> str:
    """Say what a leftover DelayedCall is, and what to do if it is known."""
    text = f"delayed call {call}"
    if _is_pool_timeout(getattr(call, "func", None)):
        text += (
            ": a connection cached by a persistent HTTPConnectionPool (treq's "
            "global pool, unless you passed pool=). Make the requests with "
            "cleanconn.http_client(), whose pool belongs to the scope and is "
            "closed at its end"
        )
    return text


def describe_connector(connector: object) -> str:
    """Say what a connect still in progress (an ``IConnector``) is."""
    text = "connect still in progress"
    destination = _call(connector, "getDestination")
    if destination is not None:
        text += f" to {_fmt(destination)}"
    factory = _innermost_factory(getattr(connector, "factory", None))
    if factory is not None:
        text += f" (factory {type(factory).__qualname__})"
    return f"{text}, never waited for: {_name(connector)}"


def describe_selectable(selectable: object, *, paused: bool = False) -> str:
    """
    Say what a reactor selectable is: its kind, addresses and protocol.

    Only reads attributes Twisted's file descriptors have; anything missing
    is left out, so any object can be described. It names the user's
    protocol and factory, never a wrapper around them (TLS, cleanconn's).
    """
    host = _call(selectable, "getHost")
    peer = _call(selectable, "getPeer")
    if getattr(selectable, "stopListening", None) is not None:
        text = "listening port"
        if host is not None:
            text += f" on {_fmt(host)}"
        factory = _innermost_factory(getattr(selectable, "factory", None))
        if factory is not None:
            text += f" (factory {type(factory).__qualname__})"
    elif peer is not None:
        if _connecting(selectable) is not None:
            text = f"connect still in progress from {_fmt(host)} to {_fmt(peer)}"
        else:
            text = f"connection {_fmt(host)} -> {_fmt(peer)}"
        protocol = _innermost(getattr(selectable, "protocol", None))
        if protocol is not None:
            text += f" (protocol {type(protocol).__qualname__})"
    else:
        text = "selectable"
        pid = getattr(getattr(selectable, "proc", None), "pid", None)
        if pid is not None:
            text = f"pipe of child process {pid}"
    if paused and getattr(selectable, "disconnecting", False):
        # Closing (loseConnection() or abortConnection() was called) takes
        # it off the reactor too: that is not a pause.
        text += ", closing: still open, its close not finished"
    elif paused:
        text += ", paused: open but neither reading nor writing"
    return f"{text}: {_name(selectable)}"


def _name(obj: object) -> str:
    """
    Our own short repr: Twisted's name a transport by its protocol's class,
    which may be a wrapper (TLS, cleanconn's), not the user's protocol.
    """
    cls = type(obj)
    text = f"<{cls.__module__}.{cls.__qualname__}"
    fileno = _call(obj, "fileno")
    if isinstance(fileno, int) and fileno >= 0:
        text += f" fd {fileno}"
    return f"{text} at 0x{id(obj):x}>"


def _is_pool_timeout(func: object) -> bool:
    """``HTTPConnectionPool._removeConnection``: a cached connection's timer."""
    if not isinstance(func, types.MethodType):
        return False
    return func.__name__ == "_removeConnection" and any(
        cls.__name__ == "HTTPConnectionPool"
        and cls.__module__.startswith("twisted.web.")
        for cls in type(func.__self__).__mro__
    )


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


def _innermost_factory(factory: object) -> object:
    """The user's factory under wrappers (TLS, endpoints, cleanconn)."""
    for _ in range(10):
        inner = getattr(factory, "wrappedFactory", None)
        if inner is None and isinstance(factory, TrackingFactory):
            inner = factory._factory
        if inner is None:
            break
        factory = inner
    return factory


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


#: Where the process's open file descriptors are listed, if anywhere.
_FD_DIRECTORIES = ("/proc/self/fd", "/dev/fd")


def _open_files() -> dict[int, tuple[int, int]] | None:
    """
    Each open file descriptor of this process, with the identity of what it
    refers to (device and inode: unique for a socket or pipe while it is
    open), or ``None`` where the system does not list them.
    """
    for directory in _FD_DIRECTORIES:
        try:
            names = os.listdir(directory)
        except OSError:  # pragma: no cover - Linux has /proc/self/fd
            continue
        found: dict[int, tuple[int, int]] = {}
        for name in names:
            try:
                fd = int(name)
                status = os.fstat(fd)
            except (ValueError, OSError):
                continue  # the listing's own descriptor, closed since
            found[fd] = (status.st_dev, status.st_ino)
        return found
    return None  # pragma: no cover - Linux has /proc/self/fd


def _timer_key(func: object) -> tuple[int, int]:
    """
    What a re-armed timer has in common with the call it replaces: the same
    object's same method (a Site's ``_updateLogDateTime``), or the same
    callable (a ``LoopingCall`` schedules itself).
    """
    if isinstance(func, types.MethodType):
        return id(func.__self__), id(func.__func__)
    return 0, id(func)


def _connecting(obj: object) -> Any:
    """
    The ``IConnector`` still connecting behind ``obj``, else ``None``.

    ``obj`` is a connector, or a client transport (``tcp.Client``: its
    ``connector``), or the bound method a DelayedCall will call (a connect
    nobody waited for shows only as its resolver and timeout calls, which
    are bound to its ``tcp.Client``).
    """
    if isinstance(obj, types.MethodType):
        obj = obj.__self__
    if not IConnector.providedBy(obj):
        if getattr(obj, "connected", True):
            return None  # a connection made (or not a client at all)
        obj = getattr(obj, "connector", None)
        if not IConnector.providedBy(obj):
            return None
    return obj if getattr(obj, "state", None) == "connecting" else None


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
        # The function (and its object) each entry call would call: kept
        # alive until exit, so that their ids stay theirs.
        self._timers: dict[tuple[int, int], list[tuple[object, IDelayedCall]]] = {}
        self._files: dict[int, tuple[int, int]] | None = None
        self._started = 0.0
        #: The child processes not reaped at entry.
        self._pids: set[int] = set()

    async def __aenter__(self) -> None:
        if self._entered:
            raise already_entered("clean_reactor()")
        self._entered = True
        reactor = self._reactor
        watch = self._watch = _watch(reactor)
        self._selectables = _registered(reactor)
        # What an enclosing scope saw paused is also not new here.
        for selectable in list(watch.removed):
            if _is_open(selectable):
                self._selectables[id(selectable)] = selectable
        calls = reactor.getDelayedCalls()
        self._calls = {id(call): call for call in calls}
        self._timers = {}
        for call in calls:
            func = getattr(call, "func", None)
            self._timers.setdefault(_timer_key(func), []).append((func, call))
        self._files = _open_files()
        self._pids = set(_unreaped())
        self._started = reactor.seconds()
        watch.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._watch is not None
        try:
            selectables, paused, calls, connecting = self._leftovers()
            processes = [p for pid, p in _unreaped().items() if pid not in self._pids]
        finally:
            self._watch.stop()
            self._selectables = {}
            self._calls = {}
            self._timers = {}
            self._files = None
            self._pids = set()
        if not selectables and not calls and not connecting and not processes:
            return
        described = describe_leftovers(selectables, calls, paused, connecting)
        described.extend(describe_process(p) for p in processes)
        pids = [p.pid for p in processes]  # before the reaping forgets them
        things = [*selectables, *connecting, *calls, *processes]
        lines = dict(zip(map(id, things), described, strict=False))
        unclosed = await _clean_up(
            self._reactor, selectables, calls, connecting, processes
        )
        error = DirtyReactorError(
            selectables,
            calls,
            paused=paused,
            unclosed=[thing for thing, _ in unclosed],
            described=described,
            connecting=connecting,
            processes=pids,
            unclosed_described=[f"{lines[id(t)]}: {why}" for t, why in unclosed],
        )
        if exc is not None:
            merge_errors(exc, error)
            return
        raise error

    def _predates(self, selectable: Any) -> bool:
        """
        ``selectable`` was open before the block: in the entry snapshot, or
        (paused then, so in neither snapshot) its file descriptor was open
        at entry and still refers to the same socket or pipe.
        """
        if id(selectable) in self._selectables:
            return True
        if self._files is None:  # pragma: no cover - Linux lists them
            return False
        try:
            fd = selectable.fileno()
            if fd not in self._files:
                return False
            status = os.fstat(fd)
        except Exception:
            return False
        return self._files[fd] == (status.st_dev, status.st_ino)

    def _owned_elsewhere(self, selectable: Any) -> bool:
        """
        Not the block's: open before it, or accepted by a listening port
        that was (a connection accepted by a port belongs to the port's
        owner, such as an enclosing ``serving()``, even when the block
        connected to it).
        """
        if self._predates(selectable):
            return True
        port = getattr(selectable, "server", None)
        return IListeningPort.providedBy(port) and self._predates(port)

    def _rearmed(self, call: IDelayedCall, used: set[int], reactor: Any) -> bool:
        """
        ``call`` re-arms a timer that predates the block: it calls the same
        method of the same object as an entry call that has since run (or
        was replaced), as a ``Site``'s log-date timer does, or it is the
        tick of a ``LoopingCall`` started before the block. A plain function
        scheduled again is not told apart from a leak, so it is reported.
        """
        func = getattr(call, "func", None)
        if not isinstance(func, types.MethodType):
            return self._older_loop(func, reactor)
        for old_func, old in self._timers.get(_timer_key(func), ()):
            if id(old) in used or old.active():
                continue
            same = isinstance(old_func, types.MethodType) and (
                old_func.__self__ is func.__self__
                and old_func.__func__ is func.__func__
            )
            if same:
                used.add(id(old))
                return True
        return False

    def _older_child(self, call: IDelayedCall) -> bool:
        """``call`` is a ``spawned()`` child's try to reap it (where no
        SIGCHLD handler does), for a child that was running at entry."""
        func = getattr(call, "func", None)
        if getattr(func, "__name__", None) != "_reap":
            return False
        from ._process import ChildProcess

        child = getattr(func, "__self__", None)
        return isinstance(child, ChildProcess) and child.pid in self._pids

    def _older_loop(self, func: object, reactor: Any) -> bool:
        """``func`` is a ``LoopingCall`` started before the block."""
        if isinstance(func, LoopingCall) and func.clock is reactor:
            started = func.starttime
            return started is not None and started < self._started
        return False

    def _leftovers(
        self,
    ) -> tuple[list[Any], list[Any], list[IDelayedCall], list[Any]]:
        reactor = self._reactor
        assert self._watch is not None
        own = _machinery(reactor)
        registered = _registered(reactor)
        selectables = [
            s
            for s in registered.values()
            if not _is_machinery(s, own) and not self._owned_elsewhere(s)
        ]
        paused = [
            s
            for s in list(self._watch.removed)
            if id(s) not in registered
            and _is_open(s)
            and not _is_machinery(s, own)
            and not self._owned_elsewhere(s)
        ]
        used: set[int] = set()
        calls = [
            call
            for call in reactor.getDelayedCalls()
            if id(call) not in self._calls
            and call.active()
            and not _is_machinery_call(call)
            and not self._rearmed(call, used, reactor)
            and not self._older_child(call)
        ]
        # A connect nobody waited for, before its socket is on the reactor:
        # only its resolver and timeout calls show it.
        seen = {id(s) for s in selectables}
        connecting: list[Any] = []
        for call in calls:
            connector = _connecting(getattr(call, "func", None))
            if (
                connector is not None
                and id(getattr(connector, "transport", None)) not in seen
                and all(c is not connector for c in connecting)
            ):
                connecting.append(connector)
        return selectables + paused, paused, calls, connecting


async def _clean_up(
    reactor: Any,
    selectables: list[Any],
    calls: list[IDelayedCall],
    connecting: Sequence[Any] = (),
    processes: Sequence[Any] = (),
) -> list[tuple[Any, str]]:
    """
    Close ``selectables`` and wait, stop ``connecting``, kill ``processes``
    and wait until they are reaped, then cancel ``calls`` still pending.

    :return: what could not be closed, each with why; a selectable among
        them has been removed from the reactor.
    """
    failed: dict[int, str] = {}
    for selectable in selectables:
        why = _close(selectable)
        if why is not None:
            failed[id(selectable)] = why
    for connector in connecting:
        with contextlib.suppress(Exception):  # reported below if still on
            connector.stopConnecting()
    for process in processes:
        with contextlib.suppress(Exception):  # ProcessExitedAlready
            process.signalProcess("KILL")
    waiting = [s for s in selectables if id(s) not in failed]
    deadline = reactor.seconds() + ABORT_GRACE
    unclosed: list[tuple[Any, str]] = []

    def busy() -> bool:
        if any(_is_open(s) for s in waiting):
            return True
        left = _unreaped()
        alive = [p for p in processes if p.pid in left]
        for process in alive:
            # Reap it here too: without a SIGCHLD handler (a reactor run
            # with installSignalHandlers=False), nothing else would.
            with contextlib.suppress(Exception):
                process.reapProcess()
        return any(p.pid in left for p in alive)

    try:
        while busy() and reactor.seconds() < deadline:
            await deferLater(reactor, 0, lambda: None)
    finally:
        for selectable in selectables:
            if not _is_open(selectable):
                continue
            why = failed.get(id(selectable)) or (
                f"{_how_closed(selectable)} did not close it within {ABORT_GRACE}s"
            )
            unclosed.append((selectable, _still_open(selectable, why)))
            reactor.removeReader(selectable)
            reactor.removeWriter(selectable)
        for connector in connecting:
            if getattr(connector, "state", None) == "connecting":
                unclosed.append(
                    (connector, "connector.stopConnecting() did not stop it")
                )
        left = _unreaped()
        for process in processes:
            if process.pid in left:
                unclosed.append(
                    (
                        process,
                        f"killed with SIGKILL, but not reaped within {ABORT_GRACE}s",
                    )
                )
        for call in calls:
            if call.active():
                _forget(call)
    return unclosed


def _unreaped() -> dict[int, Any]:
    """The child processes of this process that Twisted has not reaped yet,
    by pid (none where there are no POSIX processes)."""
    try:
        from twisted.internet.process import reapProcessHandlers
    except ImportError:  # pragma: no cover - not POSIX
        return {}
    return reapProcessHandlers


def _forget(call: IDelayedCall) -> None:
    """Cancel a leftover call, first undoing what its owner keeps for it."""
    func: Any = getattr(call, "func", None)
    if isinstance(func, LoopingCall) and func.running and func.call is call:
        # Stopped, not just its call cancelled: a cancelled LoopingCall
        # stays ``running`` and its stop() raises AlreadyCancelled.
        with contextlib.suppress(Exception):
            func.stop()
    elif _is_pool_timeout(func):
        # The pool would later cancel this call again when it hands the
        # cached connection out (AlreadyCancelled): take the connection out
        # of the pool, as the call itself would have.
        with contextlib.suppress(Exception):
            func(*getattr(call, "args", ()), **getattr(call, "kw", {}))
    if call.active():
        call.cancel()


def _still_open(selectable: Any, why: str) -> str:
    text = f"not closed ({why}); it was only removed from the reactor"
    fd = _call(selectable, "fileno")
    if isinstance(fd, int) and fd >= 0:
        text += f", and its file descriptor {fd} is still open"
    return text


def _how_closed(selectable: Any) -> str:
    """How :func:`_close` tried to close ``selectable``, in words."""
    process = _process(selectable)
    if process is not None:
        pid = getattr(process, "pid", None)
        if pid is None:
            return "closing its pipes (its child process has ended)"
        return f"killing its child process {pid} and closing its pipes"
    if IListeningPort.providedBy(selectable):
        return "stopListening()"
    if _connecting(selectable) is not None:
        return "stopConnecting()"
    if getattr(selectable, "abortConnection", None) is not None:
        return "abortConnection()"
    return "loseConnection()"


def _process(selectable: Any) -> Any:
    """The child process behind a process transport or one of its pipes."""
    if IProcessTransport.providedBy(selectable):
        return selectable
    proc = getattr(selectable, "proc", None)
    return proc if IProcessTransport.providedBy(proc) else None


def _close(selectable: Any) -> str | None:
    """
    Start closing a leaked selectable, as abruptly as it allows.

    :return: ``None`` if closing started, else why it could not.
    """
    if not _is_open(selectable):
        return None
    # A child process (one of its pipes, or a PTY process itself): kill it,
    # as trial does, or it outlives the test.
    process = _process(selectable)
    if process is not None:
        with contextlib.suppress(Exception):  # ProcessExitedAlready
            process.signalProcess("KILL")
        if process is not selectable:
            # One of its pipes: closed at once, even a stdin with unsent
            # bytes (loseConnection() would wait for a reader forever).
            from ._process import close_pipes

            close_pipes(process)
            return None
    try:
        if IListeningPort.providedBy(selectable):
            if getattr(selectable, "disconnecting", False):
                return None  # stopListening() already in flight; twice would break
            result = maybeDeferred(selectable.stopListening)
            result.addErrback(lambda _: None)
        elif _connecting(selectable) is not None:
            _connecting(selectable).stopConnecting()
        elif getattr(selectable, "abortConnection", None) is not None:
            selectable.abortConnection()
        elif getattr(selectable, "loseConnection", None) is not None:
            selectable.loseConnection()
        elif process is None:
            return (
                "it has no abortConnection(), loseConnection() or "
                "stopListening(), so there is no way to close it"
            )
    except Exception as e:
        return f"closing it raised {type(e).__name__}: {e}"
    return None


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
