"""
Streams: read and write a connection without writing a protocol.

:class:`Stream` is the protocol that :func:`~cleanconn.connected` and
:func:`~cleanconn.serving` use when given no factory. Its reads return
Deferreds (await them, or yield them under ``inlineCallbacks``) whose
``repr`` says what they wait for, so a :func:`~cleanconn.deadline` that
cancels one names it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import (
    IDelayedCall,
    IHalfCloseableDescriptor,
    IHalfCloseableProtocol,
    IProtocol,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.protocols.policies import ProtocolWrapper
from twisted.python.failure import Failure
from zope.interface import implementer

from ._addresses import format_address
from ._errors import IncompleteReadError, StreamClosed, WaitTimeout, excerpt
from ._reactor import CleanconnReactor, default_reactor
from ._scope import check_timeout

_T = TypeVar("_T")

#: Unread bytes above which a stream that no read waits on stops reading
#: from its socket (until a read needs more), so that a peer that sends
#: more than the test reads is held back by TCP, not buffered here.
HIGH_WATER = 1 << 20

# What a pending read waits for.
_EXACTLY, _UNTIL, _LINE, _SOME, _ALL = range(5)


class Waiting(Deferred[_T]):
    """A Deferred whose ``repr`` says, now, what it is waiting for (what a
    :func:`~cleanconn.deadline` that cancels it names)."""

    __slots__ = ("_describe",)

    def __init__(
        self,
        canceller: Callable[[Deferred[_T]], None],
        describe: Callable[[], str],
    ) -> None:
        super().__init__(canceller)
        self._describe = describe

    def __repr__(self) -> str:
        if self.called:
            return super().__repr__()
        return f"<{self._describe()}>"


@implementer(IProtocol, IHalfCloseableProtocol)
class Stream(Protocol):
    """
    One end of a connection, read and written without a protocol class.

    .. code-block:: python

        async with serving(EchoFactory()) as port:
            async with connected(port) as stream:
                stream.write(b"ping\\n")
                assert await stream.readline() == b"ping\\n"

    The names are :class:`asyncio.StreamReader`'s and
    :class:`asyncio.StreamWriter`'s where they mean the same thing. One
    read waits at a time. Each returns a Deferred: ``await`` it in an
    ``async def`` (or ``yield`` it under ``inlineCallbacks``). Reads wait
    as long as it takes, unless given ``timeout=`` (then
    :class:`~cleanconn.WaitTimeout`, consuming nothing) or cancelled (by a
    :func:`~cleanconn.deadline`, say: the deadline's error then names the
    read). A read that needs more than the stream had when it ended raises
    :class:`~cleanconn.IncompleteReadError`, with what there was as
    ``.partial``.

    The stream keeps reading while a read waits; when no read waits and
    more than 1 MiB is unread, it pauses reading, so a
    peer that sends more than the test reads is held back by TCP.

    When the peer closes its writing side (its ``close_write()``), this
    stream can still write the reply (it is half-closeable, as asyncio's
    streams are). The connection then stays open
    until this side closes it too (:meth:`close`, or :meth:`close_write`
    before or after), or its scope's exit does. So, to see the peer close,
    read to the end (:meth:`read`, :meth:`at_eof`); :func:`cleanconn.lost`
    fires only once this side has closed too.

    :ivar transport: the connection's transport, as for any protocol.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        #: Where a separator search resumes, so that no byte is searched twice.
        self._searched = 0
        #: How the reading side ended, in words, once it has.
        self._ended: str | None = None
        #: Why the connection was lost, if not cleanly.
        self._reason: BaseException | None = None
        #: Why writing is over, in words, once it is.
        self._no_write: str | None = None
        self._lost = False
        self._paused = False
        self._waiter: Waiting[bytes] | None = None
        #: While a read() or readexactly() waits: the chunks received since
        #: it began, kept as they came (joined once, when it completes).
        self._chunks: list[bytes] | None = None
        self._chunked = 0
        self._kind = _ALL
        self._arg: Any = None
        self._what = ""
        self._timer: IDelayedCall | None = None

    def __repr__(self) -> str:
        transport = self.transport
        where = ""
        if transport is not None:
            local = _address(transport, "getHost")
            where = f" {local} -> {_address(transport, 'getPeer')}"
        state = f", {self._ended}" if self._ended else ""
        unread = len(self._buffer) + self._chunked
        return f"<cleanconn.Stream{where}: {unread} bytes unread{state}>"

    # Writing ----------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """
        Send ``data`` (buffered by the transport; it does not wait).

        :raises StreamClosed: the writing side is closed.
        :raises TypeError: ``data`` is not bytes.
        """
        if self._no_write is not None:
            raise StreamClosed("write()", self._no_write)
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(
                f"Stream.write() takes bytes, got {type(data).__name__} "
                f"{data!r:.60}; encode text first (data.encode())"
            )
        transport: Any = self.transport
        transport.write(bytes(data) if type(data) is not bytes else data)

    def close_write(self) -> None:
        """
        Close the writing side once what was written is sent (a TCP or UNIX
        half-close: the peer reads the end of the stream); this side can
        still read the reply.

        :raises StreamClosed: the writing side is closed already.
        :raises TypeError: the transport cannot half-close (TLS).
        """
        if self._no_write is not None:
            raise StreamClosed("close_write()", self._no_write)
        transport: Any = self.transport
        # A TLS transport claims the interfaces of the TCP one under it, but
        # a half-close there would cut the TLS connection under its feet.
        if not IHalfCloseableDescriptor.providedBy(transport) or isinstance(
            transport, ProtocolWrapper
        ):
            raise TypeError(
                f"close_write(): this stream's transport "
                f"({type(self.transport).__name__}) cannot close only its "
                "writing side (TLS cannot, in Twisted); close() the stream "
                "instead, or end the data in a way the peer recognises."
            )
        self._no_write = "close_write() closed it"
        closing: Any = transport
        if self._ended is None:
            closing.loseWriteConnection()
        else:  # both sides are done: the connection is over
            closing.loseConnection()

    def close(self) -> None:
        """
        Close the connection once what was written is sent. Await
        :func:`cleanconn.lost` on the stream to wait until it is closed
        (the scope's exit does that anyway). Unread data stays readable.
        """
        if self._no_write is None:
            self._no_write = "close() closed it"
        transport: Any = self.transport
        if not self._lost and transport is not None:
            transport.loseConnection()

    # Reading ----------------------------------------------------------------

    def readexactly(self, n: int, *, timeout: float | None = None) -> Deferred[bytes]:
        """
        Exactly ``n`` bytes.

        :raises IncompleteReadError: the stream ended first.
        """
        if type(n) is not int or n < 0:
            raise _bad_count("readexactly", n, "a number of bytes, 0 or more")
        return self._read(_EXACTLY, n, timeout)

    def readuntil(
        self, separator: bytes = b"\n", *, timeout: float | None = None
    ) -> Deferred[bytes]:
        """
        Everything up to and including the first ``separator``.

        :raises IncompleteReadError: the stream ended first.
        """
        if not isinstance(separator, bytes) or not separator:
            raise TypeError(
                f"Stream.readuntil(): the separator must be non-empty bytes, "
                f"got {separator!r}"
            )
        return self._read(_UNTIL, separator, timeout)

    def readline(self, *, timeout: float | None = None) -> Deferred[bytes]:
        """
        One line, ending with ``b"\\n"``; at the end of the stream, what is
        left (``b""`` if nothing is), as :meth:`asyncio.StreamReader.readline`.
        """
        return self._read(_LINE, b"\n", timeout)

    def read(self, n: int = -1, *, timeout: float | None = None) -> Deferred[bytes]:
        """
        With ``n`` of -1 (the default): everything until the end of the
        stream. Else up to ``n`` bytes, as soon as there are any; ``b""``
        at the end of the stream.
        """
        if type(n) is not int or n < -1:
            raise _bad_count("read", n, "-1 (all, until the end) or a number of bytes")
        if n == 0:
            return succeed(b"")
        return self._read(_ALL if n == -1 else _SOME, n, timeout)

    def at_eof(self) -> bool:
        """Whether the stream ended and every byte of it was read."""
        return self._ended is not None and not self._buffer

    # How reads wait ---------------------------------------------------------

    def _read(self, kind: int, arg: Any, timeout: float | None) -> Deferred[bytes]:
        if self._waiter is not None:
            raise RuntimeError(
                f"{_call(kind, arg)}: {self._what} is still waiting on this "
                "stream; a stream does one read at a time (as asyncio's "
                "StreamReader). Await each read before the next."
            )
        if timeout is not None:
            timeout = check_timeout(timeout, f"Stream.{_call(kind, arg)}")
        self._searched = 0  # a separator search resumes only within one read
        try:
            data = self._take(kind, arg)
        except IncompleteReadError as e:
            return fail(e)
        if data is not None:
            return succeed(data)
        self._kind, self._arg, self._what = kind, arg, _call(kind, arg)
        if kind in (_ALL, _EXACTLY):
            self._chunks = []
        waiter = self._waiter = Waiting(self._cancel, self._describe)
        if self._paused:
            self._paused = False
            transport: Any = self.transport
            transport.resumeProducing()
        if timeout is not None:
            reactor = _reactor_of(self.transport)
            self._timer = reactor.callLater(timeout, self._expire, timeout)
        return waiter

    def _take(self, kind: int, arg: Any) -> bytes | None:
        """What the read wants, taken from the buffer; ``None`` if more is
        needed. At the end of the stream, raise or take what is left."""
        buf = self._buffer
        if kind == _EXACTLY:
            if len(buf) >= arg:
                return _pop(buf, arg)
            if self._ended is not None:
                raise self._incomplete(kind, _pop(buf, len(buf)), arg)
            return None
        if kind in (_UNTIL, _LINE):
            found = buf.find(arg, self._searched)
            if found >= 0:
                self._searched = 0
                return _pop(buf, found + len(arg))
            if self._ended is not None:
                self._searched = 0
                rest = _pop(buf, len(buf))
                if kind == _LINE:
                    return rest
                raise self._incomplete(kind, rest, arg)
            self._searched = max(0, len(buf) - len(arg) + 1)
            return None
        if kind == _SOME:
            if buf:
                return _pop(buf, min(arg, len(buf)))
            return b"" if self._ended is not None else None
        # _ALL
        return _pop(buf, len(buf)) if self._ended is not None else None

    def _incomplete(
        self, kind: int, partial: bytes, expected: int | bytes
    ) -> IncompleteReadError:
        assert self._ended is not None
        return IncompleteReadError(
            _call(kind, expected), partial, expected, self._ended, self._reason
        )

    def _wake(self) -> None:
        """Complete the waiting read if the buffer (or the end) now allows."""
        waiter = self._waiter
        if waiter is None:
            return
        if self._chunks is not None:  # the stream ended: all of it, or too little
            if self._kind == _ALL:
                everything = self._gather(None)
                self._done().callback(everything)
                return
            self._fold()
        try:
            data = self._take(self._kind, self._arg)
        except IncompleteReadError as e:
            self._done().errback(e)
            return
        if data is not None:
            self._done().callback(data)

    def _gather(self, n: int | None) -> bytes:
        """The buffer and the chunks, joined once: all (``n`` of ``None``),
        or the first ``n`` bytes (there are enough), the rest buffered."""
        chunks, self._chunks, self._chunked = self._chunks, None, 0
        assert chunks is not None
        buf = self._buffer
        if n is None:
            data = b"".join([buf, *chunks])
            buf.clear()
            return data
        parts: list[bytes | bytearray] = [buf]
        needed = n - len(buf)
        rest: list[bytes] = []
        for i, chunk in enumerate(chunks):
            if len(chunk) < needed:
                parts.append(chunk)
                needed -= len(chunk)
                continue
            parts.append(chunk[:needed] if len(chunk) > needed else chunk)
            if len(chunk) > needed:
                rest.append(chunk[needed:])
            rest.extend(chunks[i + 1 :])
            break
        data = b"".join(parts)
        buf.clear()
        for chunk in rest:
            buf += chunk
        return data

    def _fold(self) -> None:
        """Put the chunks of a read that did not complete into the buffer."""
        chunks, self._chunks, self._chunked = self._chunks, None, 0
        for chunk in chunks or ():
            self._buffer += chunk

    def _done(self) -> Waiting[bytes]:
        if self._chunks is not None:
            self._fold()
        waiter = self._waiter
        assert waiter is not None
        self._waiter = None
        self._what = ""
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()
        return waiter

    def _cancel(self, waiter: Deferred[bytes]) -> None:
        if self._waiter is waiter:
            self._done()
            waiter.errback(CancelledError())

    def _expire(self, timeout: float) -> None:
        self._timer = None
        what = f"{self._what} on {self!r}"
        waiter = self._done()  # the chunks go back into the buffer
        waiter.errback(WaitTimeout(what, timeout, bytes(self._buffer)))

    def _describe(self) -> str:
        """The waiting read, as a deadline's error names it."""
        buf = self._buffer + b"".join(self._chunks or ())
        if self._kind in (_UNTIL, _LINE):
            need = f", no {self._arg!r} in them"
        elif self._kind == _EXACTLY:
            need = f", {self._arg} needed"
        else:
            need = ""
        got = f": {excerpt(bytes(buf), 40)}" if buf else ""
        return f"{self._what} on {self!r}{need}{got}"

    # IProtocol ----------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        chunks = self._chunks
        if chunks is not None:  # a read() or readexactly() waits
            chunks.append(data)
            self._chunked += len(data)
            if (
                self._kind == _EXACTLY
                and len(self._buffer) + self._chunked >= self._arg
            ):
                data = self._gather(self._arg)
                self._done().callback(data)
            return
        self._buffer += data
        if self._waiter is not None:
            self._wake()
        if (
            self._waiter is None
            and not self._paused
            and len(self._buffer) > HIGH_WATER
            and not self._lost
        ):
            self._paused = True
            transport: Any = self.transport
            transport.pauseProducing()

    def readConnectionLost(self) -> None:
        if self._ended is None:
            self._ended = "the peer closed its side"
        if self._no_write is not None:  # both sides are done: close
            transport: Any = self.transport
            transport.loseConnection()
        self._wake()

    def writeConnectionLost(self) -> None:
        """The half-close of :meth:`close_write` is done."""

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._lost = True
        if self._no_write is None:
            self._no_write = "the connection was lost"
        if self._ended is None:
            if isinstance(reason, Failure) and not reason.check(ConnectionDone):  # type: ignore[no-untyped-call]
                self._reason = reason.value
                self._ended = "the connection was lost"
            elif self._no_write == "close() closed it":
                self._ended = "this side closed it"
            else:
                self._ended = "the connection was closed"
        self._wake()


class StreamFactory(Factory):
    """Builds a :class:`Stream` for each connection: what the scopes use
    when given no factory."""

    protocol = Stream
    noisy = False


def _pop(buf: bytearray, n: int) -> bytes:
    """The first ``n`` bytes of ``buf``, removed from it (one copy)."""
    if n == len(buf):
        data = bytes(buf)
        buf.clear()
        return data
    with memoryview(buf) as view:
        data = bytes(view[:n])
    del buf[:n]
    return data


def _call(kind: int, arg: Any) -> str:
    """A read as a message names it, such as ``readexactly(10)``."""
    if kind == _EXACTLY:
        return f"readexactly({arg})"
    if kind == _UNTIL:
        return f"readuntil({arg!r})"
    if kind == _LINE:
        return "readline()"
    if kind == _SOME:
        return f"read({arg})"
    return "read()"


def _bad_count(method: str, n: object, what: str) -> Exception:
    if type(n) is not int:
        kind = type(n).__name__
        return TypeError(f"Stream.{method}() takes {what}, got {kind} {n!r}")
    return ValueError(f"Stream.{method}() takes {what}, got {n!r}")


def _reactor_of(transport: Any) -> CleanconnReactor:
    """The reactor a transport runs on (under TLS, the one under it)."""
    for _ in range(4):
        reactor = getattr(transport, "reactor", None)
        if reactor is not None:
            return reactor  # type: ignore[no-any-return]
        transport = getattr(transport, "transport", None)
    return default_reactor(None)


def _address(transport: Any, getter: str) -> str:
    try:
        return format_address(getattr(transport, getter)())
    except Exception:
        return "?"
