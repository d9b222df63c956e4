"""
Every exception cleanconn raises, in one place.

Each one says whose fault it is and what to do about it; the details are
attributes, so a test can assert on them without parsing the message.
"""

from __future__ import annotations

import shlex
import signal
from collections.abc import Sequence
from dataclasses import dataclass

from twisted.internet.defer import TimeoutError as _TwistedTimeoutError
from twisted.python.reflect import safe_repr as _safe_repr

from ._addresses import format_address as _fmt


def safe_repr(value: object) -> str:
    """``repr(value)``, or, if that raises, Twisted's note that it did: an
    error message about the user's objects must never raise itself."""
    text: str = _safe_repr(value)  # type: ignore[no-untyped-call]
    return text


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


@dataclass(frozen=True)
class ProcessReport:
    """
    What cleanconn knew about a child process of :func:`~cleanconn.spawned`
    that it had to report.

    :ivar pid: the child's process ID.
    :ivar argv: the command line it was started with.
    :ivar returncode: how it ended, as :attr:`subprocess.Popen.returncode`
        (a negative number is the signal that ended it), or ``None`` if it
        was still running.
    :ivar needed: what it took to end it, in words, such as ``"SIGKILL"``.
    :ivar ended: whether it has ended now (reaped, every pipe closed).
    :ivar output: the last lines it printed (stdout and stderr), as text.
    """

    pid: int | None
    argv: tuple[str, ...]
    returncode: int | None
    needed: str
    ended: bool
    output: tuple[str, ...] = ()

    def __str__(self) -> str:
        text = f"The child process {self.pid} ({_command(self.argv)}) {self.needed}."
        if not self.ended:
            text += " It has still not ended; it may be left behind."
        return text + _output_lines(self.output)


def _command(argv: Sequence[str]) -> str:
    """A command line for a message (shell-quoted, shortened)."""
    text = shlex.join(argv)
    return text if len(text) <= 120 else text[:117] + "..."


def _output_lines(output: Sequence[str]) -> str:
    """The last lines a child printed, for a message."""
    if not output:
        return "\nIt printed nothing."
    return "\nIts last output:\n" + "\n".join(f"  | {line}" for line in output)


def _status(returncode: int) -> str:
    """An exit status in words."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name}"
    return f"exited with status {returncode}"


class CleanConnError(Exception):
    """
    Base class of every error cleanconn raises itself.

    Errors that Twisted raised (a refused connection, a DNS failure) are
    passed through unchanged and are not subclasses of this.

    The :doc:`/troubleshooting` page shows each subclass's message, what it
    means and what to do.
    """


class CleanupTimeout(CleanConnError):
    """
    A scope's exit had to abort what did not close gracefully in time.

    Everything in :attr:`aborted` was aborted (a child process behind a
    transport that cannot abort was killed) and waited for; what is in
    :attr:`unclosed` did not close even then, and the message says so. The
    cause is almost always a peer that stopped reading (so the last writes
    could never be flushed), a protocol that never closes its side (a
    half-closeable protocol, a child process that ignores the end of its
    input), or a listening port whose ``stopListening`` never fired.

    See :ref:`Troubleshooting <troubleshooting-cleanup-timeout>`.

    :ivar scope: the scope whose exit it was, such as ``"connected()"``.
    :ivar timeout: the ``timeout`` of the scope, in seconds.
    :ivar aborted: a :class:`ConnectionReport` for each aborted connection.
    :ivar unclosed: the reports of those that were still open a second
        after the abort (an abort normally completes at once).
    :ivar port: the address of a listening port that had not stopped by the
        deadline, else ``None``.
    :ivar foreign: the reports of client ends that other code in this
        process opened to a :func:`~cleanconn.serving` port and that had not
        closed by the deadline; they are not aborted (not cleanconn's).
    :ivar processes: a :class:`ProcessReport` for each child process of
        :func:`~cleanconn.spawned` that had not ended by the deadline and
        was killed.
    """

    def __init__(
        self,
        scope: str,
        timeout: float,
        aborted: Sequence[ConnectionReport],
        port: object = None,
        unclosed: Sequence[ConnectionReport] = (),
        foreign: Sequence[ConnectionReport] = (),
        processes: Sequence[ProcessReport] = (),
    ) -> None:
        self.scope = scope
        self.timeout = timeout
        self.aborted = tuple(aborted)
        self.unclosed = tuple(unclosed)
        self.port = port
        self.foreign = tuple(foreign)
        self.processes = tuple(processes)
        lines = [f"{scope} did not close gracefully within timeout={timeout}s."]
        for process in self.processes:
            lines.append(str(process))
        if aborted:
            lines.append(f"Aborted {len(aborted)} connection(s):")
            lines.extend(f"  - {report}" for report in aborted)
            if any(report.unsent for report in aborted):
                lines.append(
                    "Bytes were still unsent: the peer was not reading (paused, "
                    "or never reads). Make the peer read, or stop writing "
                    "before the scope ends."
                )
            else:
                lines.append(
                    "Their protocol did not close in time: look for a peer "
                    "that stopped reading, a half-closeable protocol that "
                    "never closes its side, a child process that ignores the "
                    "end of its input, or a TLS peer that never answers "
                    "close_notify. If the close is merely slow, raise timeout=."
                )
        if self.unclosed:
            lines.append(
                f"{len(self.unclosed)} of them did not close even when "
                "aborted, and are still open:"
            )
            lines.extend(f"  - {report}" for report in self.unclosed)
        elif aborted:
            lines.append("All of them are closed now.")
        if port is not None:
            lines.append(
                f"The listening port {_fmt(port)} did not report stopping: its "
                "stopListening() Deferred never fired. It is not cleanconn's "
                "port: look at the endpoint that made it."
            )
        if self.foreign:
            lines.append(
                f"{len(self.foreign)} client end(s) of connections to this port, "
                "opened by other code in this process, did not close after the "
                "server side closed. cleanconn did not open them, so it did not "
                "abort them; they are still open:"
            )
            lines.extend(f"  - {report}" for report in self.foreign)
            lines.append(
                "Such a client end stays open when its protocol is "
                "half-closeable and keeps its own side open after the "
                "server's close, or when it stopped reading before it saw "
                "that close: close it in the code that opened it, before the "
                "serving() block ends."
            )
        super().__init__("\n".join(lines))


class ProtocolError(CleanConnError):
    """
    A protocol callback of the code under test raised.

    Twisted handled the exception as it always does (logged it and, for
    ``dataReceived``, dropped the connection); cleanconn still cleaned up and
    raises this so the failure cannot go unnoticed outside trial. Fix the
    protocol: the original exception is ``__cause__`` and in :attr:`errors`.
    See :ref:`Troubleshooting <troubleshooting-protocol-error>`.

    :ivar errors: ``(report, callback name, exception)`` for each failure.
    """

    def __init__(
        self,
        errors: Sequence[tuple[ConnectionReport, str, BaseException]],
    ) -> None:
        self.errors = tuple(errors)
        lines = [f"{len(self.errors)} protocol callback(s) raised:"]
        lines.extend(
            f"  - {report.side} {report.protocol.__qualname__}.{where}() "
            f"raised {safe_repr(exc)}"
            for report, where, exc in self.errors
        )
        lines.append(
            "The connection was still closed and waited for. Fix the "
            "protocol; the first exception is chained as __cause__."
        )
        super().__init__("\n".join(lines))


class ConnectionRejected(CleanConnError):
    """
    The server closed a new connection before the scope could use it.

    With a :func:`~cleanconn.serving` port whose factory's ``buildProtocol``
    returned ``None`` for the connection, or raised, the message names that
    factory (and the exception, which is also ``__cause__``). See
    :ref:`Troubleshooting <troubleshooting-connection-rejected>`.

    :ivar scope: the scope that was entering, such as ``"connected()"``.
    :ivar address: the client's local address of the rejected connection.
    :ivar waiting: what the scope was waiting for when it was closed.
    :ivar factory: the :func:`~cleanconn.serving` factory that built no
        protocol for it, or ``None`` if the server closed it otherwise.
    :ivar error: what that factory's ``buildProtocol`` raised, if it raised.
    """

    def __init__(
        self,
        scope: str,
        address: object,
        waiting: str,
        factory: object = None,
        error: BaseException | None = None,
    ) -> None:
        self.scope = scope
        self.address = address
        self.waiting = waiting
        self.factory = factory
        self.error = error
        if error is not None:
            why = (
                "the server built a protocol for it: the serving() factory "
                f"{safe_repr(factory)} raised {safe_repr(error)} in buildProtocol(). "
                "Fix the factory (the exception is chained as __cause__)"
            )
            self.__cause__ = error
        elif factory is not None:
            why = (
                "the server built a protocol for it: the serving() factory "
                f"{safe_repr(factory)} returned None from buildProtocol(). Make it "
                "build one, or expect the rejection with assertRaises"
            )
        else:
            why = (
                f"{waiting}: the server closed it. Look at the server's "
                "log for why it turned this client away"
            )
        source = "" if address is None else f" from {_fmt(address)}"
        super().__init__(f"{scope}: the connection{source} was closed before {why}.")


class ReactorNotRunning(CleanConnError):
    """
    A scope was entered on a reactor that is not running.

    Nothing a scope waits for (a connection, a close, a port's stop) can
    happen then, so it would wait forever. Enter scopes from code the
    running reactor calls: a trial test, a pytest-twisted test, or a
    ``task.react()`` entry point; pass ``reactor=`` only a running one.
    See :ref:`Troubleshooting <troubleshooting-reactor-not-running>`.

    :ivar scope: the scope, such as ``"serving()"``.
    :ivar reactor: the reactor that is not running.
    """

    def __init__(self, scope: str, reactor: object) -> None:
        self.scope = scope
        self.reactor = reactor
        super().__init__(
            f"{scope}: the reactor {reactor!r} is not running, so nothing the "
            "scope waits for could ever happen. Enter scopes from code the "
            "running reactor calls (a trial or pytest-twisted test, or a "
            "task.react() entry point), and pass reactor= only a running one."
        )


class DirtyReactorError(CleanConnError):
    """
    Code under test left something on the reactor that was not there before.

    Raised by :func:`~cleanconn.clean_reactor` at the end of its block. By
    then what is listed has been cleaned up (connections aborted, listening
    ports stopped, connects in progress stopped, DelayedCalls cancelled,
    each waited for), so what runs next starts with a clean reactor, except
    what :attr:`unclosed` lists: the message names each of those and says
    why it is still open. The message has a line for each leftover,
    describing it as it was found, before the cleanup. See
    :ref:`Troubleshooting <troubleshooting-dirty-reactor>`.

    :ivar selectables: the leftover readers, writers and paused connections
        (Twisted ``FileDescriptor`` objects such as ``tcp.Port``,
        ``tcp.Server``, ``tcp.Client``).
    :ivar delayed_calls: the leftover pending ``DelayedCall`` objects.
    :ivar paused: the subset of :attr:`selectables` that were open but
        neither reading nor writing (paused): trial's janitor cannot see
        these.
    :ivar connecting: connects started in the block and never waited for
        (the ``IConnector`` of a ``connectTCP()``, say) that were still in
        progress, seen only through their DelayedCalls; they were stopped
        with ``stopConnecting()``.
    :ivar processes: the process IDs of child processes started in the
        block (by ``reactor.spawnProcess``) and never reaped; they were
        killed (SIGKILL) and waited for.
    :ivar unclosed: what could not be closed (selectables, removed from the
        reactor but still open, connectors still connecting, and processes
        not reaped even after SIGKILL).
    """

    # cleanconn makes it (the janitor); its arguments are not public API.
    # ``described``: one line per leftover, taken before the cleanup (by
    # _janitor.describe_leftovers); by default computed from the objects as
    # they are now. ``unclosed_described``: one line per item of
    # ``unclosed``, saying why it is still open.
    def __init__(
        self,
        selectables: Sequence[object],
        delayed_calls: Sequence[object],
        *,
        paused: Sequence[object] = (),
        unclosed: Sequence[object] = (),
        described: Sequence[str] | None = None,
        scope: str = "clean_reactor()",
        connecting: Sequence[object] = (),
        unclosed_described: Sequence[str] | None = None,
        processes: Sequence[int] = (),
    ) -> None:
        self.selectables = tuple(selectables)
        self.delayed_calls = tuple(delayed_calls)
        self.paused = tuple(paused)
        self.connecting = tuple(connecting)
        self.processes = tuple(processes)
        self.unclosed = tuple(unclosed)
        what = f"{len(self.selectables)} selectable(s), "
        if self.connecting:
            what += f"{len(self.connecting)} connect(s) in progress, "
        if self.processes:
            what += f"{len(self.processes)} child process(es) not reaped, "
        what = what[: -len(", ")] + " and "
        lines = [
            f"The reactor is dirty: the code inside {scope} left behind "
            f"{what}{len(self.delayed_calls)} DelayedCall(s) that were not "
            "there at its start:"
        ]
        if described is None:
            from ._janitor import describe_leftovers

            described = describe_leftovers(
                self.selectables, self.delayed_calls, self.paused, self.connecting
            )
            described.extend(
                f"child process {pid}, not reaped" for pid in self.processes
            )
        lines.extend(f"  - {line}" for line in described)
        lines.append(
            "Close each connection and listening port and wait until it is "
            "closed (await stopListening(); wait for connectionLost on both "
            "sides; cleanconn.serving() and cleanconn.connected() do both), "
            "and cancel each DelayedCall you scheduled."
        )
        if self.connecting:
            lines.append(
                "Wait for each connect you start (await the endpoint's "
                "connect(), or cleanconn.connected()), or stop it with "
                "connector.stopConnecting(): they were stopped so."
            )
        if self.processes:
            lines.append(
                "Wait for each child process you start to end (its protocol's "
                "processEnded), or run it with cleanconn.spawned(), which "
                "stops it and waits; they were killed so."
            )
        if self.paused:
            lines.append(
                "A paused connection (pauseProducing/stopReading) never sees "
                "its peer close: close it from this side."
            )
        if self.unclosed:
            if unclosed_described is None:
                unclosed_described = [repr(thing) for thing in self.unclosed]
            lines.append(
                f"Could not close {len(self.unclosed)} of them; each is still "
                "open, and may disturb what runs next:"
            )
            lines.extend(f"  - {line}" for line in unclosed_described)
            found = len(self.selectables) + len(self.connecting) + len(self.processes)
            if len(self.unclosed) < found:
                lines.append("The rest has been closed and the DelayedCalls cancelled.")
            else:
                lines.append("The DelayedCalls have been cancelled.")
        else:
            lines.append(
                "All of it has been closed and cancelled, so the next test "
                "starts clean."
            )
        super().__init__("\n".join(lines))


class ConnectTimeout(CleanConnError):
    """
    Entering a scope gave up: what it waited for did not happen in time.

    The server did not accept, did not run ``connectionMade``, or did not
    complete the TLS handshake within the scope's ``timeout``. Whatever
    was connected was closed again and waited for; the block did not run.
    See :ref:`Troubleshooting <troubleshooting-connect-timeout>`.

    :ivar scope: the scope that gave up, such as ``"connected()"``.
    :ivar timeout: the scope's ``timeout``, in seconds.
    :ivar waiting: what it was waiting for, in words.
    :ivar address: the client's local address of the connection, when one
        was made, else ``None``.
    """

    def __init__(
        self, scope: str, timeout: float, waiting: str, address: object = None
    ) -> None:
        self.scope = scope
        self.timeout = timeout
        self.waiting = waiting
        self.address = address
        where = "" if address is None else f" (connection from {_fmt(address)})"
        super().__init__(
            f"{scope}: gave up after timeout={timeout}s waiting until "
            f"{waiting}{where}. Is the server accepting connections and "
            "answering them? If it is merely slow, raise timeout=."
        )


class TLSUnavailable(CleanConnError, ImportError):
    """
    TLS was asked for, but its optional dependencies are not installed.

    Install them with ``pip install 'cleanconn[tls]'`` (pyOpenSSL,
    service-identity and cryptography, as ``twisted[tls]`` declares them).
    See :ref:`Troubleshooting <troubleshooting-tls-unavailable>`.
    """


class ScopeClosed(CleanConnError):
    """
    A scope that has ended (or is ending) was asked for something only an
    open scope gives.

    :func:`~cleanconn.http_client` raises it (in the request's Deferred) for
    a request made after its block, or for a request Twisted retried on a
    new connection while the exit was closing the old one;
    :meth:`ServingPort.accept() <cleanconn.ServingPort.accept>` for a call
    after its :func:`~cleanconn.serving` block, or one still waiting when
    the block ended.

    :ivar scope: the name of the scope, such as ``"http_client()"``.
    :ivar action: what was asked, such as ``"accept()"``, or ``None`` for a
        new connection.

    ``accept()`` raises it too when the port stopped listening
    (``stopListening()`` inside the block) and nothing is left to accept.
    See :ref:`Troubleshooting <troubleshooting-scope-closed>`.
    """

    def __init__(
        self, scope: str, action: str | None = None, stopped: bool = False
    ) -> None:
        self.scope = scope
        self.action = action
        if stopped:
            text = (
                f"{action}: the port stopped listening (stopListening() was "
                "called), so no connection can come any more. Accept what "
                "the test needs before stopping the port."
            )
        elif action is None:
            text = (
                f"{scope}: the scope has ended, or is ending, so it opens no new "
                "connection. Make and finish each request inside the async with "
                "block (await the response, and its body if the test needs it)."
            )
        else:
            text = (
                f"{action}: its {scope} scope has ended, or is ending, so there "
                f"is nothing more to {action.partition('(')[0]}. Call it inside "
                f"the async with block, and await it there."
            )
        super().__init__(text)


def excerpt(data: bytes, limit: int = 60) -> str:
    """``data`` as a message shows it: its ``repr``, the middle left out
    when it is long."""
    if len(data) <= limit:
        return repr(data)
    half = limit // 2
    return f"{data[:half]!r} ... {data[-half:]!r} ({len(data)} bytes)"


class IncompleteReadError(CleanConnError, EOFError):
    """
    A stream read needed more than the stream had when it ended.

    As :class:`asyncio.IncompleteReadError`: :attr:`partial` is what the
    stream had (it is consumed: the read took it), :attr:`expected` what
    the read wanted. The stream ended because the peer closed its side
    (:attr:`reason` is ``None``), the connection was lost otherwise (a
    reset, an abort, a failed TLS handshake: :attr:`reason` is Twisted's
    exception), or this side closed it. See
    :ref:`Troubleshooting <troubleshooting-incomplete-read>`.

    :ivar what: the read, such as ``"readexactly(10)"``.
    :ivar partial: the bytes received before the end, ``b""`` if none.
    :ivar expected: the number of bytes (``readexactly``), or the separator
        (``readuntil``).
    :ivar ended: how the stream ended, in words.
    :ivar reason: the exception the connection was lost with, unless it
        ended cleanly.
    """

    def __init__(
        self,
        what: str,
        partial: bytes,
        expected: int | bytes,
        ended: str,
        reason: BaseException | None = None,
    ) -> None:
        self.what = what
        self.partial = partial
        self.expected = expected
        self.ended = ended
        self.reason = reason
        if isinstance(expected, int):
            wanted = f"{len(partial)} of {expected} bytes"
        else:
            wanted = f"{len(partial)} bytes and no {expected!r}"
        got = f": {excerpt(partial)}" if partial else ""
        cause = "" if reason is None else f" ({type(reason).__name__}: {reason})"
        super().__init__(
            f"{what}: the stream ended ({ended}{cause}) with {wanted}{got}. "
            "The peer sent less than the test expects, or closed early; "
            "e.partial has what it did send."
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (
            type(self),
            (self.what, self.partial, self.expected, self.ended, self.reason),
        )


class WaitTimeout(CleanConnError, _TwistedTimeoutError):
    """
    A stream read, :meth:`~cleanconn.ServingPort.accept` or
    :meth:`~cleanconn.ChildProcess.wait` given its own ``timeout=`` did not
    complete in time.

    Nothing was consumed: what the stream had received stays buffered for
    the next read. It is a :class:`twisted.internet.defer.TimeoutError` too.
    See :ref:`Troubleshooting <troubleshooting-wait-timeout>`.

    :ivar what: what waited, such as ``"readline() on <cleanconn.Stream
        ...>"``.
    :ivar timeout: the ``timeout`` given, in seconds.
    :ivar buffered: for a read, the bytes the stream holds unread (still
        there); ``None`` for ``accept()`` and ``ChildProcess.wait()``.
    :ivar hint: what to check, for a wait that is neither a read nor
        ``accept()`` (such as ``ChildProcess.wait()``); ``None`` otherwise.
    """

    def __init__(
        self,
        what: str,
        timeout: float,
        buffered: bytes | None,
        *,
        hint: str | None = None,
    ) -> None:
        self.what = what
        self.timeout = timeout
        self.buffered = buffered
        self.hint = hint
        if hint is not None:
            advice = f" {hint}"
        elif buffered is None:
            advice = (
                " No client connected. Is the code under test connecting to this port?"
            )
        else:
            held = (
                f" It holds {len(buffered)} unread bytes: {excerpt(buffered)}."
                if buffered
                else " Nothing arrived."
            )
            advice = f"{held} Is the peer sending what the test waits for?"
        super().__init__(
            f"{what} did not complete within timeout={timeout}s.{advice} If it "
            "is merely slow, raise timeout=."
        )


class StreamClosed(CleanConnError):
    """
    A write to a :class:`~cleanconn.Stream` whose writing side is closed:
    by :meth:`~cleanconn.Stream.close_write` or
    :meth:`~cleanconn.Stream.close`, or because the connection was lost
    (its scope ended, or the peer reset it). See
    :ref:`Troubleshooting <troubleshooting-stream-closed>`.

    :ivar what: the call, such as ``"write()"``.
    :ivar why: how the writing side was closed, in words.
    """

    def __init__(self, what: str, why: str) -> None:
        self.what = what
        self.why = why
        if what.startswith("stdin."):
            advice = (
                "Write everything before closing stdin; the child's output "
                "can still be read."
            )
        elif why.startswith("close_write"):
            advice = "Write everything before close_write()."
        else:
            advice = (
                "Write before closing; to send the end of the data and still "
                "read the reply, use close_write()."
            )
        super().__init__(f"{what}: this stream can no longer write ({why}). {advice}")


@dataclass(frozen=True)
class WaitingAt:
    """
    Where a coroutine was waiting: the innermost frame of the user's code
    (not cleanconn's, Twisted's or asyncio's), and what it awaited there.

    :ivar filename: the file of that frame.
    :ivar lineno: the line it was suspended on.
    :ivar function: the name of its function.
    :ivar source: that line of source, stripped (``""`` if unavailable).
    :ivar awaiting: what it awaited, in words: the ``repr`` of a Deferred,
        or, inside a cleanconn scope's entry, the scope and what it was
        waiting for.
    """

    filename: str
    lineno: int
    function: str
    source: str
    awaiting: str

    def __str__(self) -> str:
        source = f"\n    {self.source}" if self.source else ""
        return (
            f"in {self.function}() at {self.filename}, line {self.lineno}:"
            f"{source}\n  awaiting {self.awaiting}"
        )


class DeadlineExceeded(CleanConnError, _TwistedTimeoutError):
    """
    A function under :func:`~cleanconn.deadline` ran out of time.

    It is a :class:`twisted.internet.defer.TimeoutError` too, so code that
    expects Twisted's timeouts (``except defer.TimeoutError``,
    ``assertFailure(d, defer.TimeoutError)``) catches it.

    When the deadline passed, the function was cancelled at the ``await``
    it was stuck in, and every cleanconn scope it was in exited as it does
    on cancellation (closing what it owned and waiting for it), before this
    was raised. A function that caught the ``CancelledError`` and went on
    waiting was cancelled again ``grace`` seconds later; one still running
    another ``grace`` later was abandoned (:attr:`abandoned`). See
    :ref:`Troubleshooting <troubleshooting-deadline-exceeded>`.

    :ivar function: the qualified name of the function.
    :ivar seconds: its deadline, in seconds.
    :ivar waiting: where it was waiting when the deadline passed, a
        :class:`WaitingAt` (``None`` if that could not be found).
    :ivar grace: seconds it was given to end after each cancellation.
    :ivar ignored: where it went on waiting after catching the
        cancellation (a :class:`WaitingAt`), else ``None``.
    :ivar abandoned: whether it still had not ended after the second
        cancellation and was left suspended: the scopes it is in have not
        exited, and the reactor may be dirty.
    :ivar cleanup_errors: what the scopes' exits reported (such as a
        :class:`CleanupTimeout`, naming what had to be aborted).
    """

    def __init__(
        self,
        function: str,
        seconds: float,
        waiting: WaitingAt | None,
        grace: float,
        ignored: WaitingAt | None = None,
        abandoned: bool = False,
        cleanup_errors: Sequence[BaseException] = (),
    ) -> None:
        self.function = function
        self.seconds = seconds
        self.waiting = waiting
        self.grace = grace
        self.ignored = ignored
        self.abandoned = abandoned
        self.cleanup_errors = tuple(cleanup_errors)
        lines = [f"{function}() did not finish within deadline={seconds}s."]
        if waiting is not None:
            lines.append(f"It was waiting {waiting}")
        else:
            lines.append("It was not waiting on anything cleanconn could find.")
        lines.append("It was cancelled there.")
        if ignored is not None:
            lines.append(
                "It caught the CancelledError and went on waiting "
                f"{ignored}\nso it was cancelled again after grace={grace}s."
            )
        if abandoned:
            lines.append(
                f"It still had not ended {grace}s later, so it was abandoned "
                "there: the cleanconn scopes it is in have not exited, and "
                "what they own may be left on the reactor. Re-raise "
                "CancelledError when you catch it."
            )
        elif cleanup_errors:
            lines.append(
                "It has ended: every cleanconn scope it was in exited, but reported:"
            )
            lines.extend(
                f"  - {type(e).__name__}: {e}".replace("\n", "\n    ")
                for e in cleanup_errors
            )
        else:
            lines.append(
                "It has ended: every cleanconn scope it was in exited, closing "
                "what it owned and waiting for it, so nothing of theirs is "
                "left on the reactor."
            )
        super().__init__("\n".join(lines))


class ProcessNotReady(CleanConnError):
    """
    :func:`~cleanconn.spawned` gave up waiting for its child process to be
    ready: the child exited first, or the readiness check did not pass
    within the scope's ``timeout``. The child has been stopped and reaped;
    the block did not run. See
    :ref:`Troubleshooting <troubleshooting-process-not-ready>`.

    :ivar argv: the command line.
    :ivar pid: the child's process ID.
    :ivar waiting: the readiness check, in words.
    :ivar timeout: the scope's ``timeout``, in seconds.
    :ivar returncode: how the child ended, if it exited before it was ready
        (as :attr:`subprocess.Popen.returncode`), else ``None``.
    :ivar output: the last lines the child printed.
    """

    def __init__(
        self,
        argv: Sequence[str],
        pid: int | None,
        waiting: str,
        timeout: float,
        returncode: int | None,
        output: Sequence[str],
        printed: bool = False,
    ) -> None:
        self.argv = tuple(argv)
        self.pid = pid
        self.waiting = waiting
        self.timeout = timeout
        self.returncode = returncode
        self.output = tuple(output)
        head = f"spawned(): the child process {pid} ({_command(self.argv)})"
        if returncode is not None:
            text = (
                f"{head} {_status(returncode)} before it was ready (waiting "
                f"for {waiting}). Look at its output for why it ended."
            )
        else:
            text = (
                f"{head} was not ready within timeout={timeout}s (waiting for "
                f"{waiting}); it has been stopped. Check that the readiness "
                "check matches what the program does (its output is below; "
                "printed() matches whole lines, ended by a newline), or raise "
                "timeout= if it is merely slow to start."
            )
        if printed and not self.output and returncode is None:
            text += (
                "\nIt printed nothing. If it is a Python program, its output "
                "may be waiting in its buffer: print(..., flush=True), or run "
                "it with python -u (or PYTHONUNBUFFERED=1 in env=)."
            )
            super().__init__(text)
            return
        super().__init__(text + _output_lines(self.output))


class ProcessFailed(CleanConnError):
    """
    A child process of :func:`~cleanconn.spawned` exited by itself while
    the block ran, with a status that was not expected. (A status the test
    expects goes in ``expected_returncodes=``.) See
    :ref:`Troubleshooting <troubleshooting-process-failed>`.

    :ivar argv: the command line.
    :ivar pid: the child's process ID.
    :ivar returncode: how it ended, as :attr:`subprocess.Popen.returncode`
        (a negative number is the signal that ended it).
    :ivar expected: the return codes that would not have been a failure.
    :ivar output: the last lines the child printed.
    """

    def __init__(
        self,
        argv: Sequence[str],
        pid: int | None,
        returncode: int,
        expected: Sequence[int],
        output: Sequence[str],
    ) -> None:
        self.argv = tuple(argv)
        self.pid = pid
        self.returncode = returncode
        self.expected = tuple(expected)
        self.output = tuple(output)
        codes = ", ".join(map(str, self.expected)) or "none"
        super().__init__(
            f"spawned(): the child process {pid} ({_command(self.argv)}) "
            f"{_status(returncode)} while the block ran (expected return "
            f"codes: {codes}). If the test expects that, pass "
            f"expected_returncodes=({returncode}, ...); otherwise its output "
            "says why it ended." + _output_lines(self.output)
        )


class FragmentationFailed(CleanConnError):
    """
    :func:`~cleanconn.sweep_fragmentation` ran the body once per way of
    cutting the byte stream, and it failed under some of them: the protocol
    (or the test) assumes that bytes arrive in the pieces they were
    written in, which TCP never promises. See
    :ref:`Troubleshooting <troubleshooting-fragmentation-failed>`.

    :ivar failures: ``(chunking, exception)`` for each chunking that failed.
    :ivar chunkings: the name of every chunking tried.
    :ivar seed: the seed of the random sizes; pass it as ``seed=`` to repeat.
    """

    def __init__(
        self,
        failures: Sequence[tuple[str, BaseException]],
        chunkings: Sequence[str],
        seed: int,
    ) -> None:
        self.failures = tuple(failures)
        self.chunkings = tuple(chunkings)
        self.seed = seed
        failed = [name for name, _ in self.failures]
        passed = [name for name in self.chunkings if name not in failed]
        lines = [
            f"sweep_fragmentation(): the body failed when the bytes were cut "
            f"into {', '.join(failed)} (passed: {', '.join(passed) or 'none'}; "
            f"seed={seed}):"
        ]
        lines.extend(
            f"  - {name}: {type(e).__name__}: {e}".replace("\n", "\n    ")
            for name, e in self.failures
        )
        if "whole" in passed:
            lines.append(
                "It passes when each write arrives whole, so something "
                "probably assumes that one dataReceived() is one message: "
                "buffer the bytes and "
                "split them by the protocol's framing (LineReceiver, "
                "Int32StringReceiver, or your own buffer)."
            )
        super().__init__("\n".join(lines))
