"""
``spawned()``: a child process for the length of a scope, ready before the
block runs, and stopped, reaped and waited for at its exit.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import shutil
import signal
import sys
from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any
from urllib.parse import urlsplit

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred, succeed
from twisted.internet.error import ConnectionDone, ProcessExitedAlready
from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorProcess
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

from ._addresses import reachable_host
from ._errors import (
    ProcessFailed,
    ProcessNotReady,
    ProcessReport,
    StreamClosed,
    WaitTimeout,
)
from ._reactor import CleanconnReactor
from ._ready import Readiness, Tries, _Printed
from ._scope import DEFAULT_TIMEOUT, Scope, check_timeout
from ._streams import Stream, Waiting
from ._teardown import Closing

#: How much of what the child printed (stdout and stderr together, the most
#: recent) is kept for reports, and how many lines of it a report shows.
OUTPUT_KEPT = 64 * 1024
LINES_SHOWN = 20
#: How much of each of those lines a report shows.
LINE_SHOWN = 300

_PIPE_NAMES = {0: "stdin", 1: "stdout", 2: "stderr"}

#: Unread bytes a child's stdout or stderr keeps by default; beyond it the
#: oldest unread bytes are dropped (counted in ``Stream.dropped``), so a
#: child that prints more than the test reads never blocks on its output.
OUTPUT_LIMIT = 4 << 20

#: Starts ``argv`` in a process group of its own, then becomes it.
_NEW_GROUP = "import os,sys;os.setpgid(0,0);os.execv(sys.argv[1],sys.argv[2:])"


class ChildOutput(Stream):
    """
    A child's stdout or stderr, read as a :class:`~cleanconn.Stream` is:
    ``readline()``, ``readuntil()``, ``readexactly()``, ``read()``.

    It is never paused: what the test does not read is kept, up to the
    ``output_limit`` of :func:`~cleanconn.spawned`; beyond it the oldest
    unread bytes are dropped and counted in :attr:`dropped`. It cannot be
    written (write to :attr:`ChildProcess.stdin`); :meth:`close` stops
    reading it.

    :ivar dropped: unread bytes dropped so far, to stay within the limit.
    """

    def __init__(self, child: ChildProcess, fd: int, limit: int) -> None:
        super().__init__()
        self._child = child
        self._fd = fd
        self._limit = limit
        self._no_write = "it is the child's output"
        self.dropped = 0
        self.transport = _Pipe(child, fd)  # type: ignore[assignment]

    def __repr__(self) -> str:
        name = "stdout" if self._fd == 1 else "stderr"
        unread = len(self._buffer) + self._chunked
        state = f", {self._ended}" if self._ended else ""
        dropped = f", {self.dropped} dropped" if self.dropped else ""
        return (
            f"<cleanconn {name} of child {self._child.pid}: "
            f"{unread} bytes unread{dropped}{state}>"
        )

    def write(self, data: bytes) -> None:
        """Refused: a child's output is read, not written."""
        raise TypeError(f"{self!r} is the child's output: write to child.stdin instead")

    def close_write(self) -> None:
        """Refused: a child's output is read, not written."""
        raise TypeError(f"{self!r} is the child's output: close child.stdin instead")

    def close(self) -> None:
        """Stop reading it (the child gets EPIPE if it writes more); what
        was read stays readable."""
        if self._ended is None:
            self._ended = "close() closed it"
        super().close()

    def dataReceived(self, data: bytes) -> None:
        if self._waiter is not None:
            super().dataReceived(data)
            self._paused = False  # never paused: the child must not block
            if self._waiter is not None and self._chunks is None:
                # A readline() or readuntil() still waits: its separator is
                # not in what is buffered, so the oldest bytes can go.
                buf = self._buffer
                excess = len(buf) - self._limit
                if excess > 0:
                    del buf[:excess]
                    self.dropped += excess
                    self._searched = max(0, self._searched - excess)
            return
        buf = self._buffer
        buf += data
        excess = len(buf) - self._limit
        if excess > 0:
            del buf[:excess]
            self.dropped += excess
            self._searched = 0

    def _end(self) -> None:
        """The child closed this pipe, or it was closed."""
        if self._ended is None:
            name = "stdout" if self._fd == 1 else "stderr"
            self._ended = f"the child closed its {name}"
        self.connectionLost(Failure(ConnectionDone()))  # type: ignore[no-untyped-call]


class _Pipe:
    """What a :class:`ChildOutput` has for a transport."""

    def __init__(self, child: ChildProcess, fd: int) -> None:
        self.reactor = child._reactor
        self._child = child
        self._fd = fd

    def loseConnection(self) -> None:
        transport = self._child._transport
        if transport is not None:
            transport.closeChildFD(self._fd)

    def pauseProducing(self) -> None:
        """Never paused (see :class:`ChildOutput`)."""

    def resumeProducing(self) -> None:
        """Never paused."""


class ChildStdin:
    """The child's standard input: :meth:`write` to it, :meth:`close` it."""

    def __init__(self, child: ChildProcess) -> None:
        self._child = child
        #: Why it is closed, once it is.
        self._closed: str | None = None

    def __repr__(self) -> str:
        state = f"closed: {self._closed}" if self._closed else "open"
        return f"<cleanconn stdin of child {self._child.pid}: {state}>"

    @property
    def closed(self) -> bool:
        """Whether it is closed (by :meth:`close`, or the child ended)."""
        return self._closed is not None

    def write(self, data: bytes) -> None:
        """
        Send ``data`` to the child (buffered; it does not wait).

        :raises StreamClosed: stdin is closed.
        :raises TypeError: ``data`` is not bytes.
        """
        if self._closed is not None:
            raise StreamClosed("stdin.write()", self._closed)
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(
                f"stdin.write() takes bytes, got {type(data).__name__} "
                f"{data!r:.60}; encode text first (data.encode())"
            )
        transport = self._child._transport
        assert transport is not None
        transport.write(bytes(data))

    def close(self) -> None:
        """Close it once what was written is sent: the child reads EOF."""
        if self._closed is None:
            self._closed = "close() closed it"
            transport = self._child._transport
            if transport is not None:
                transport.closeStdin()


class ChildProcess:
    """
    A child process started by :func:`~cleanconn.spawned`.

    :ivar argv: the command line, as text.
    :ivar pid: its process ID.
    :ivar stdin: its standard input (:class:`ChildStdin`).
    :ivar stdout: its standard output (:class:`ChildOutput`, a stream).
    :ivar stderr: its standard error (:class:`ChildOutput`, a stream).
    :ivar match: the :class:`re.Match` of a :func:`~cleanconn.printed`
        readiness check, else ``None``.
    :ivar address: where it accepts connections, once a readiness check
        found it (:func:`~cleanconn.accepting`, or a ``port``/``host`` or
        ``path`` group of :func:`~cleanconn.printed`), else ``None``.
    :ivar returncode: ``None`` while it runs; then its exit status, or the
        negative number of the signal that ended it (as
        :attr:`subprocess.Popen.returncode`).
    :ivar ended: whether it has ended: reaped, and every pipe closed.
    """

    def __init__(
        self, argv: tuple[str, ...], reactor: CleanconnReactor, limit: int
    ) -> None:
        self.argv = argv
        self.pid: int | None = None
        self._reactor = reactor
        self._transport: Any = None
        self.stdin = ChildStdin(self)
        self.stdout = ChildOutput(self, 1, limit)
        self.stderr = ChildOutput(self, 2, limit)
        self.match: re.Match[Any] | None = None
        self.address: IAddress | None = None
        self._url: str | None = None
        self.returncode: int | None = None
        #: Whether it has ended: reaped, and every pipe closed.
        self.ended = False
        self._on_end: list[Callable[[object], object]] = []
        #: Called once it has exited (reaped), pipes open or not.
        self._on_exit: list[Callable[[object], object]] = []
        #: Its working directory, if not this process's.
        self._cwd: str | None = None
        self._output = bytearray()
        #: While a printed() check waits: called with each complete line.
        self._watch: Callable[[int, bytes], None] | None = None
        self._partial = {1: bytearray(), 2: bytearray()}
        self._group = False
        self._stop_signal: int = signal.SIGTERM
        self._stopping = False
        #: Trying again to reap it, where no SIGCHLD handler does.
        self._reaping: IDelayedCall | None = None

    def __repr__(self) -> str:
        if self.returncode is None:
            state = "running"
        else:
            state = f"returncode {self.returncode}"
        return f"<cleanconn child {self.pid} ({_short(self.argv)}): {state}>"

    # What a test uses ---------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """
        A client endpoint string for :attr:`address`, which
        :func:`~cleanconn.connected` takes.

        :raises LookupError: no readiness check found an address.
        """
        address = self.address
        if isinstance(address, UNIXAddress):
            name = address.name
            path = name.decode() if isinstance(name, bytes) else str(name)
            return "unix:path=" + path.replace(":", r"\:")
        if isinstance(address, (IPv4Address, IPv6Address)):
            host = address.host.replace(":", r"\:")
            return f"tcp:host={host}:port={address.port}"
        raise self._no_address("endpoint")

    @property
    def url(self) -> str:
        """
        The URL an :func:`~cleanconn.answering` check reached, else
        ``http://`` :attr:`address` ``/`` for a TCP address.

        :raises LookupError: no readiness check found a URL or TCP address.
        """
        if self._url is not None:
            return self._url
        address = self.address
        if isinstance(address, (IPv4Address, IPv6Address)):
            host = f"[{address.host}]" if ":" in address.host else address.host
            return f"http://{host}:{address.port}/"
        raise self._no_address("url")

    def _no_address(self, what: str) -> LookupError:
        return LookupError(
            f"{self!r} has no {what}: no readiness check found where it "
            f"listens ({self.address!r}). Give spawned() ready=accepting(...), "
            "ready=answering(url), or ready=printed(...) with a pattern that "
            "has a (?P<port>...) group (and (?P<host>...) if not 127.0.0.1)."
        )

    @property
    def output(self) -> bytes:
        """The last 64 KiB the child printed, stdout and stderr as they came
        (kept for reports, whether the test read them or not)."""
        return bytes(self._output)

    def send_signal(self, signum: int | str) -> None:
        """
        Send a signal (``signal.SIGHUP``, or its name: ``"HUP"``), to the
        child's process group when it has one.

        :raises ProcessExitedAlready: the child has ended.
        """
        number = _signal_number(signum, "ChildProcess.send_signal()")
        if self.returncode is not None or self._transport is None:
            raise ProcessExitedAlready()
        self._signal(number)

    def wait(self, *, timeout: float | None = None) -> Deferred[int]:
        """
        Wait until the child has ended (reaped, every pipe closed); its
        :attr:`returncode`.

        :raises WaitTimeout: ``timeout`` seconds passed first (the child
            goes on).
        """
        if timeout is not None:
            timeout = check_timeout(timeout, "ChildProcess.wait()")
        if self.ended:
            assert self.returncode is not None
            return succeed(self.returncode)
        timer: IDelayedCall | None = None

        def cancel(_: object) -> None:
            self._forget(done)
            if timer is not None and timer.active():
                timer.cancel()

        def ended(_: object) -> None:
            if timer is not None and timer.active():
                timer.cancel()
            if not waiter.called:
                assert self.returncode is not None
                waiter.callback(self.returncode)

        def expire() -> None:
            self._forget(done)
            waiter.errback(
                WaitTimeout(
                    f"wait() on {self!r}",
                    timeout or 0,
                    None,
                    hint="The child is still running. Does it exit by itself, "
                    "or must the test end it (child.stdin.close(), "
                    "child.send_signal())?",
                )
            )

        done = ended
        waiter: Waiting[int] = Waiting(cancel, lambda: f"wait() on {self!r}")
        self._when_ended(done)
        if timeout is not None:
            timer = self._reactor.callLater(timeout, expire)
        return waiter

    # What teardown uses ------------------------------------------------------------

    def _when_ended(self, callback: Callable[[object], object]) -> None:
        """Call ``callback(None)`` once the child has ended."""
        if self.ended:
            callback(None)
        else:
            self._on_end.append(callback)

    def _forget(self, callback: Callable[[object], object]) -> None:
        with contextlib.suppress(ValueError):
            self._on_end.remove(callback)

    def _stop(self) -> None:
        """Close stdin and send the stop signal (unless it exited)."""
        self._stopping = True
        self.stdin.close()
        if self.returncode is None or self._group:
            self._signal(self._stop_signal)

    def _kill(self) -> None:
        """SIGKILL (its group, if it has one), and close this side of its
        pipes, so that a process it started cannot hold them open."""
        self._exited_before_kill = self.returncode is not None
        if self.returncode is None or self._group:
            self._signal(signal.SIGKILL)
        transport = self._transport
        if transport is not None:
            pipes = getattr(transport, "pipes", {})
            self._held = tuple(_PIPE_NAMES.get(fd, f"fd {fd}") for fd in sorted(pipes))
            close_pipes(transport)

    def _report(self, timeout: float) -> ProcessReport:
        """What :class:`~cleanconn.CleanupTimeout` says of a killed child."""
        stop = signal.Signals(self._stop_signal).name
        group = " to its process group" if self._group else ""
        if self._exited_before_kill:
            held = " and ".join(self._held) or "its pipes"
            needed = (
                f"had exited, but {held} stayed open for timeout={timeout}s: "
                "a process it started holds them, so cleanconn closed its own "
                "ends of them. Pass process_group=True to spawned() to end "
                "such processes too"
            )
        else:
            needed = (
                f"did not end within timeout={timeout}s of {stop}{group}, so it "
                f"was sent SIGKILL{group}"
            )
        return ProcessReport(
            self.pid, self.argv, self.returncode, needed, self.ended, self._last_lines()
        )

    _exited_before_kill = False
    _held: tuple[str, ...] = ()

    def _last_lines(self, n: int = LINES_SHOWN) -> tuple[str, ...]:
        """The last ``n`` lines it printed, as text, for messages."""
        text = self._output.decode("utf-8", "replace")
        return tuple(
            line if len(line) <= LINE_SHOWN else line[: LINE_SHOWN - 3] + "..."
            for line in text.splitlines()[-n:]
        )

    def _signal(self, number: int) -> None:
        pid = self.pid
        if pid is None:  # pragma: no cover - only a started child is signalled
            return
        if self._group:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, number)
                return
        if self.returncode is None:
            with contextlib.suppress(ProcessExitedAlready):
                self._transport.signalProcess(number)

    # What the process protocol tells -------------------------------------------

    def _received(self, fd: int, data: bytes) -> None:
        output = self._output
        output += data
        if len(output) > OUTPUT_KEPT:
            del output[: len(output) - OUTPUT_KEPT]
        # Into the stream first: a printed() match starts the block at once,
        # and the block must find the line it matched there.
        (self.stdout if fd == 1 else self.stderr).dataReceived(data)
        if self._watch is not None:
            partial = self._partial[fd]
            partial += data
            while self._watch is not None:
                end = partial.find(b"\n")
                if end < 0:
                    break
                line = bytes(partial[: end + 1])
                del partial[: end + 1]
                self._watch(fd, line)
            if len(partial) > OUTPUT_KEPT:  # a line without end: bounded
                del partial[: len(partial) - OUTPUT_KEPT]

    def _found(self, match: re.Match[Any]) -> None:
        """A :func:`~cleanconn.printed` check matched."""
        self.match = match
        groups = match.groupdict()
        port, host, path = groups.get("port"), groups.get("host"), groups.get("path")
        if isinstance(path, bytes):
            path = path.decode()
        if isinstance(port, bytes):
            port = port.decode()
        if isinstance(host, bytes):
            host = host.decode()
        if path:
            self.address = UNIXAddress(path)
        elif port and port.isdigit():
            host = reachable_host(host or "127.0.0.1")
            cls = IPv6Address if ":" in host else IPv4Address
            self.address = cls("TCP", host, int(port))

    def _reached(self, address: IAddress) -> None:
        """An :func:`~cleanconn.accepting` check connected."""
        self.address = address

    def _answered(self, url: str) -> None:
        """An :func:`~cleanconn.answering` check got its answer: its URL,
        and its address when the URL names an IP address or localhost."""
        self._url = url
        parts = urlsplit(url)
        host = "127.0.0.1" if parts.hostname == "localhost" else parts.hostname
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if host is not None and _is_ip(host):
            cls = IPv6Address if ":" in host else IPv4Address
            self.address = cls("TCP", host, port)

    def _exited(self, reason: Failure) -> None:
        self.returncode = _returncode(reason)
        callbacks, self._on_exit = self._on_exit, []
        for callback in callbacks:
            callback(None)
        if self.stdin._closed in (None, "the child closed it"):
            self.stdin._closed = "the child exited"

    def _pipes_closed(self) -> None:
        """
        Every pipe is closed: Twisted tries to reap the child once. If it
        has not exited yet, only SIGCHLD would make Twisted try again; where
        no handler is installed (a reactor run with
        ``installSignalHandlers=False``), try again here, ever less often.
        """
        if self.returncode is None and signal.getsignal(signal.SIGCHLD) in (
            signal.SIG_DFL,
            None,
        ):
            self._reap_later(0.001)

    def _reap_later(self, delay: float) -> None:
        self._reaping = self._reactor.callLater(delay, self._reap, delay)

    def _reap(self, delay: float) -> None:
        """One more try to reap it (see :meth:`_pipes_closed`); a method, so
        that :func:`~cleanconn.clean_reactor` knows the timer is its."""
        self._reaping = None
        transport = self._transport
        if transport is None or self.returncode is not None:
            return
        transport.reapProcess()
        if self.returncode is None and self._transport is not None:
            self._reap_later(min(delay * 2, 0.1))

    def _ended(self) -> None:
        self.ended = True
        self._transport = None
        reaping, self._reaping = self._reaping, None
        if reaping is not None and reaping.active():
            reaping.cancel()
        for stream in (self.stdout, self.stderr):
            stream._end()
        callbacks, self._on_end = self._on_end, []
        for callback in callbacks:
            callback(None)


class _Protocol(ProcessProtocol):
    def __init__(self, child: ChildProcess) -> None:
        self._child = child

    def childDataReceived(self, childFD: int, data: bytes) -> None:  # noqa: N803
        if childFD in (1, 2):  # pragma: no branch - stdin is the only other pipe
            self._child._received(childFD, data)

    def childConnectionLost(self, childFD: int) -> None:  # noqa: N803
        if childFD == 0:
            stdin = self._child.stdin
            stdin._closed = stdin._closed or "the child closed it"
        elif childFD in (1, 2):  # pragma: no branch - there are no other pipes
            child = self._child
            partial = child._partial[childFD]
            if child._watch is not None and partial:
                line, partial[:] = bytes(partial), b""
                child._watch(childFD, line)  # the last line, unfinished
            (child.stdout if childFD == 1 else child.stderr)._end()
        transport = self._child._transport
        if transport is not None and not getattr(transport, "pipes", True):
            self._child._pipes_closed()

    def processExited(self, reason: Failure) -> None:
        self._child._exited(reason)

    def processEnded(self, reason: Failure) -> None:
        child = self._child
        if child.returncode is None:  # pragma: no cover - processExited() ran first
            child._exited(reason)
        child._ended()


class _Spawned(Scope[ChildProcess]):
    name = "spawned()"

    def __init__(
        self,
        argv: Sequence[str | bytes | os.PathLike[str]] | str,
        ready: Readiness | None,
        env: Mapping[str, str] | None,
        cwd: str | os.PathLike[str] | None,
        shell: bool,
        process_group: bool | None,
        stop_signal: int | str,
        expected_returncodes: Collection[int] | None,
        output_limit: int,
        reactor: CleanconnReactor | None,
        timeout: float,
    ) -> None:
        self._argv = _command_line(argv, shell)
        if ready is not None and not isinstance(ready, Readiness):
            raise TypeError(
                "spawned(): ready= takes printed(...), accepting(...) or "
                f"answering(...), got {ready!r}"
            )
        if env is not None and not isinstance(env, Mapping):
            raise TypeError(f"spawned(): env= takes a mapping, got {env!r}")
        if cwd is not None and not os.path.isdir(cwd):
            raise NotADirectoryError(
                f"spawned(): cwd={os.fspath(cwd)!r} is not a directory"
            )
        if type(output_limit) is not int or output_limit < 1:
            raise ValueError(
                f"spawned(): output_limit must be a positive number of bytes, "
                f"got {output_limit!r}"
            )
        if expected_returncodes is not None:
            if not isinstance(expected_returncodes, Collection) or isinstance(
                expected_returncodes, (str, bytes)
            ):
                raise TypeError(
                    "spawned(): expected_returncodes takes a collection of "
                    "return codes, such as (0,) or (0, 2), or None for any; "
                    f"got {expected_returncodes!r}"
                )
            expected_returncodes = tuple(expected_returncodes)
            if not all(type(code) is int for code in expected_returncodes):
                raise TypeError(
                    "spawned(): expected_returncodes takes return codes (ints), "
                    f"got {expected_returncodes!r}"
                )
        self._stop = _signal_number(stop_signal, "spawned(): stop_signal")
        super().__init__(reactor, timeout)
        if not IReactorProcess.providedBy(self.reactor):
            raise TypeError(
                f"spawned() needs a reactor that can start processes "
                f"(IReactorProcess), got {self.reactor!r}"
            )
        self._executable = _executable(self._argv[0], env, cwd)
        self._ready = ready
        self._env = None if env is None else dict(env)
        self._cwd = None if cwd is None else os.fspath(cwd)
        #: A shell's command may start processes of its own (a pipeline,
        #: ``cmd &``): they are ended with it unless told otherwise.
        self._group = shell if process_group is None else process_group
        self._expected = expected_returncodes
        self._child = ChildProcess(self._argv, self.reactor, output_limit)
        #: Set now: a readiness check's before() looks in it too.
        self._child._cwd = self._cwd
        #: Whether the block ran (so a death before the exit is its failure).
        self._ran = False
        #: The return code of a child that ended before the exit began.
        self._died: int | None = None

    def _enter(self) -> Any:
        ready = self._ready
        if ready is not None and type(ready).before is not Readiness.before:
            return self._checked_first(ready)
        return self._start()

    async def _checked_first(self, ready: Readiness) -> ChildProcess:
        """Fail before starting the child if its check passes already."""
        before = ensureDeferred(ready.before(self._child, self.reactor))
        timer = self.reactor.callLater(self.left(), before.cancel)
        try:
            await before
        except CancelledError:
            if timer.active():  # cancelled from outside, not by the timer
                raise
        finally:
            if timer.active():
                timer.cancel()
        started: Any = self._start()  # with a ready check: a coroutine
        return await started  # type: ignore[no-any-return]

    def _start(self) -> Any:
        child = self._child
        child._group = self._group
        child._stop_signal = self._stop
        args = list(self._argv)
        args[0] = self._argv[0]
        executable = self._executable
        if self._group:
            args = [sys.executable, "-I", "-S", "-c", _NEW_GROUP, executable, *args]
            executable = sys.executable
        reactor: Any = self.reactor
        child._transport = reactor.spawnProcess(
            _Protocol(child), executable, args, env=self._env, path=self._cwd
        )
        child.pid = child._transport.pid
        if self._ready is None:
            self._ran = True
            return child
        return self._until_ready(child, self._ready)

    async def _until_ready(self, child: ChildProcess, ready: Readiness) -> ChildProcess:
        tries = Tries()
        check = ready.wait(child, self.reactor, tries)
        outcome: Deferred[None] = Deferred()
        reactor = self.reactor

        def settle(result: object) -> None:
            if outcome.called:
                return  # called off: what it says is not needed
            if isinstance(result, Failure):
                outcome.errback(result)
            else:
                outcome.callback(None)

        def give_up(_: object = None) -> None:
            if not outcome.called:
                outcome.errback(self._not_ready(ready, tries))

        grace: list[Any] = []

        def exited(_: object) -> None:
            # Its last output may still be in the pipes: wait for them to
            # close (ended), a moment at most (a process it started may
            # hold them).
            if not outcome.called and not grace:
                grace.append(reactor.callLater(min(0.25, self.left()), give_up))

        check.addBoth(settle)
        child._when_ended(give_up)
        child._on_exit.append(exited)
        timer = reactor.callLater(self.left(), give_up)
        try:
            await outcome
        finally:
            child._forget(give_up)
            with contextlib.suppress(ValueError):
                child._on_exit.remove(exited)
            for call in (timer, *grace):
                if call.active():
                    call.cancel()
            if not check.called:
                tries.stopped = True
                check.cancel()
                with contextlib.suppress(Exception):  # it ended: all it had to do
                    await check
                    # A connect it cancelled ends on Twisted's next turns
                    # (its resolver call): let them pass.
                    for _ in range(2):
                        await deferLater(reactor, 0, lambda: None)
        self._ran = True
        return child

    def _not_ready(self, ready: Readiness, tries: Tries) -> ProcessNotReady:
        child = self._child
        waiting = ready.describe()
        if tries.last is not None:
            waiting += f" (last try: {tries.last})"
        return ProcessNotReady(
            child.argv,
            child.pid,
            waiting,
            self.timeout,
            child.returncode,
            child._last_lines(),
            printed=isinstance(ready, _Printed),
        )

    def _close(self, closing: Closing) -> None:
        child = self._child
        if child.pid is None:
            return  # never started
        if child.returncode is not None and self._ran:
            self._died = child.returncode
        child._stop()
        closing.wait_for_child(child)

    def _closed(self, errors: list[BaseException]) -> list[Any]:
        child = self._child
        if child._group and child.pid is not None:
            # What is left of its group (a process it started and that
            # ignored the stop signal): ended too.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, signal.SIGKILL)
        died = self._died
        expected = self._expected
        if died is not None and expected is not None and died not in expected:
            errors.append(
                ProcessFailed(
                    child.argv, child.pid, died, expected, child._last_lines()
                )
            )
        return []


try:
    from twisted.internet.process import ProcessReader

    #: The pipes of a child process that the parent reads (POSIX).
    _READERS: tuple[type, ...] = (ProcessReader,)
except ImportError:  # pragma: no cover - not POSIX
    _READERS = ()


def close_pipes(transport: Any) -> None:
    """
    Close this side of every pipe of a child process at once, stdin
    included: ``loseConnection()`` would wait for its unsent bytes to be
    read, forever if nothing reads them (a process the child started holds
    it and never reads). A reader already being closed is left to its close
    on the next turn.
    """
    pipes: dict[int, Any] = getattr(transport, "pipes", {})
    for pipe in list(pipes.values()):
        if getattr(pipe, "disconnected", False):
            continue
        if isinstance(pipe, _READERS) and getattr(pipe, "disconnecting", False):
            # A pipe the parent reads, being closed already: its
            # loseConnection() runs connectionLost on the next turn, and a
            # second one would fail there (KeyError in Twisted). (A pipe
            # the parent writes waits for its unsent bytes: closed here.)
            continue
        with contextlib.suppress(Exception):
            pipe.connectionLost(Failure(ConnectionDone("closed by cleanconn")))  # type: ignore[no-untyped-call]


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _returncode(reason: Failure) -> int:
    value: Any = reason.value
    code = getattr(value, "exitCode", None)
    sig = getattr(value, "signal", None)
    if sig:
        return -int(sig)
    return int(code or 0)


def _signal_number(signum: object, where: str) -> int:
    if isinstance(signum, str):
        name = signum.upper()
        name = name if name.startswith("SIG") else "SIG" + name
        number = getattr(signal.Signals, name, None)
        if number is not None:
            return int(number)
    elif (
        isinstance(signum, int)
        and not isinstance(signum, bool)
        and 0 <= signum < signal.NSIG
    ):
        return signum
    raise ValueError(
        f"{where} takes a signal (signal.SIGTERM, or a name such as "
        f'"TERM"), got {signum!r}'
    )


def _command_line(
    argv: Sequence[str | bytes | os.PathLike[str]] | str, shell: bool
) -> tuple[str, ...]:
    if shell:
        if not isinstance(argv, str):
            raise TypeError(
                "spawned(..., shell=True) takes the command as one string, "
                f"got {argv!r}"
            )
        return ("/bin/sh", "-c", argv)
    if isinstance(argv, (str, bytes)):
        raise TypeError(
            f"spawned() takes the command as a list of arguments, such as "
            f"[sys.executable, 'server.py'], got the string {argv!r}; split it "
            "yourself (shlex.split), or pass shell=True to run it with /bin/sh"
        )
    try:
        args = tuple(os.fsdecode(arg) for arg in argv)
    except TypeError:
        raise TypeError(
            f"spawned() takes a list of str, bytes or path arguments, got {argv!r}"
        ) from None
    if not args:
        raise ValueError("spawned() needs a command: argv is empty")
    return args


def _executable(program: str, env: Mapping[str, str] | None, cwd: object) -> str:
    """Where ``program`` is, found as ``execvp`` would (on ``PATH`` unless
    it has a slash); raises ``FileNotFoundError`` saying where it looked."""
    if os.sep in program:
        path = program
        if cwd is not None and not os.path.isabs(path):
            path = os.path.join(os.fspath(cwd), path)  # type: ignore[call-overload]
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return os.path.abspath(path)
        raise FileNotFoundError(
            f"spawned(): {program!r} is not an executable file"
            + ("" if cwd is None else f" (relative to cwd={cwd!r})")
        )
    if env is None:
        search = os.environ.get("PATH", os.defpath)
    else:
        found_path: Any = env.get("PATH")
        if found_path is None:
            found_path = env.get(b"PATH", os.defpath)  # type: ignore[call-overload]
        search = os.fsdecode(found_path)
    found = shutil.which(program, path=search)
    if found is None:
        raise FileNotFoundError(
            f"spawned(): no executable {program!r} on PATH ({search}); give its "
            "path, or set PATH in env="
        )
    return found


def _short(argv: Sequence[str]) -> str:
    text = " ".join(argv).replace("\n", "\\n")
    return text if len(text) <= 60 else text[:57] + "..."


def spawned(
    argv: Sequence[str | bytes | os.PathLike[str]] | str,
    *,
    ready: Readiness | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    shell: bool = False,
    process_group: bool | None = None,
    stop_signal: int | str = signal.SIGTERM,
    expected_returncodes: Collection[int] | None = (0,),
    output_limit: int = OUTPUT_LIMIT,
    reactor: CleanconnReactor | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> AbstractAsyncContextManager[ChildProcess]:
    """
    Run a child process for the length of an ``async with`` block.

    .. code-block:: python

        argv = [sys.executable, "-m", "twisted", "web", "--listen", "tcp:0"]
        async with spawned(argv, ready=printed(r"on (?P<port>\\d+)")) as child:
            async with http_client() as client:
                response = await client.get(child.url)

    The child starts with ``reactor.spawnProcess`` (no shell unless
    ``shell=True``), its stdin, stdout and stderr pipes to this process.
    The block runs once ``ready`` says it is ready: a line it printed
    (:func:`~cleanconn.printed`), an address that accepts
    (:func:`~cleanconn.accepting`), or a URL that answers
    (:func:`~cleanconn.answering`), all within ``timeout`` seconds; else
    :class:`~cleanconn.ProcessNotReady`, with its output, and the block
    does not run.

    At the exit, for any reason, stdin is closed and ``stop_signal`` sent;
    the exit waits until the child has ended: reaped, every pipe closed.
    Past ``timeout`` seconds it is killed (SIGKILL), its pipes closed, and
    waited for (at most a second more); then
    :class:`~cleanconn.CleanupTimeout` says what it took. No zombie, pipe
    or timer is left. If the child ended by itself during the block with a
    return code not in ``expected_returncodes``, the exit raises
    :class:`~cleanconn.ProcessFailed`, with its output. The body's
    exception always wins.

    :param argv: the program and its arguments (found on ``PATH`` unless
        it has a slash); with ``shell=True``, one command string for
        ``/bin/sh -c``.
    :param ready: when the child is ready; by default, as soon as it starts.
    :param env: the child's whole environment; this process's by default.
    :param cwd: the child's working directory; this process's by default.
    :param process_group: start the child in a process group of its own,
        signal the whole group, and kill what is left of the group at the
        exit: for a program that starts processes of its own. By default,
        only with ``shell=True``.
    :param stop_signal: the signal that asks it to stop at the exit.
    :param expected_returncodes: the return codes that are no failure when
        the child exits by itself during the block; ``None`` for any.
    :param output_limit: unread bytes each of stdout and stderr keeps.
    :param reactor: the reactor to use; the global one by default.
    :param timeout: seconds for the child to be ready, and then for it to
        end at the exit before it is killed.
    :raises FileNotFoundError: the program is not there.
    :raises ProcessNotReady: the child exited, or was not ready in time.
    :raises ProcessFailed: the child exited by itself during the block
        with a return code not expected.
    :raises CleanupTimeout: the child had to be killed at the exit.
    """
    return _Spawned(
        argv,
        ready,
        env,
        cwd,
        shell,
        process_group,
        stop_signal,
        expected_returncodes,
        output_limit,
        reactor,
        timeout,
    )
