"""
``proxied()``: a fault-injecting TCP proxy between a test's clients and a
server, in this process, with every leg of every connection closed and
waited for at its exit.
"""

from __future__ import annotations

import contextlib
import random
from collections import deque
from collections.abc import Callable, Iterable
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import (
    clientFromString,
)
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IHalfCloseableProtocol,
    IPullProducer,
    IPushProducer,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from ._addresses import connect_to, format_address, is_unix, local_key, tcp_target
from ._connections import ConnectionSet
from ._errors import ScopeClosed, safe_repr
from ._faults import CLOSE, RESET, Fault, _check_fault
from ._matching import ticket
from ._reactor import CleanconnReactor
from ._scope import DEFAULT_TIMEOUT, Scope
from ._serving import DEFAULT_BACKLOG, ServingPort, _Serving, matcher_of
from ._teardown import Closing, add_note
from ._tracked import Tracked, tracking_factory, unsent_bytes

#: Bytes a direction may hold back (delayed by its faults, or waiting for
#: the server to accept) before the proxy stops reading from the sender.
HIGH_WATER = 1 << 20

_DATA, _EOF = "data", "eof"

#: Seconds a reset waits for what was written before it to be sent, before
#: it resets all the same (dropping it, as a reset does).
RESET_WAIT = 0.25

#: Why a pipe holds its source back: its queue is full.
_QUEUE = "queue"

#: How a pipe ended when it was stopped (it delivers nothing more).
_STOPPED = "stopped"


class Direction:
    """
    One direction of a :func:`~cleanconn.proxied` connection: ``upstream``
    (client to server) or ``downstream`` (server to client). Its faults
    act on every connection through the proxy, those open now and those
    made later; changing them acts on the bytes read from then on.

    :ivar name: ``"upstream"`` or ``"downstream"``.
    :ivar faults: the faults, in the order they act.
    :ivar bytes: how many bytes were delivered in this direction, over
        every connection.
    """

    def __init__(self, proxy: Proxy, name: str) -> None:
        self._proxy = proxy
        self.name = name
        self.faults: list[Fault] = []
        self.bytes = 0
        self._pipes: dict[Pipe, None] = {}

    def __repr__(self) -> str:
        faults = ", ".join(f.name for f in self.faults) or "no faults"
        return f"<cleanconn proxy {self.name}: {faults}, {self.bytes} bytes>"

    def add(self, *faults: Fault) -> None:
        """Add ``faults`` (after those there are)."""
        where = f"proxy.{self.name}.add()"
        for fault in faults:
            _check_fault(fault, where)
        for fault in faults:
            self.faults.append(fault)
            for pipe in list(self._pipes):
                fault.started(pipe)

    def remove(self, fault: Fault) -> None:
        """Remove ``fault``.

        :raises ValueError: it is not there.
        """
        try:
            self.faults.remove(fault)
        except ValueError:
            raise ValueError(f"{fault!r} is not a fault of {self!r}") from None
        if fault in self.faults:
            return  # added twice: the other one still acts
        for pipe in list(self._pipes):
            fault.stopped(pipe)

    def clear(self) -> None:
        """Remove every fault."""
        for fault in list(self.faults):
            self.remove(fault)


class Pipe:
    """One direction of one proxied connection: from a leg, to the other."""

    def __init__(self, link: _Link, direction: Direction, source: ProxyLeg) -> None:
        self.link = link
        self.direction = direction
        self.source = source
        self.dest: ProxyLeg | None = None
        #: Each fault's state for this pipe (bytes passed, when free, ...).
        self.state: dict[Fault, Any] = {}
        self._queue: deque[tuple[float, str, Any]] = deque()
        self._queued = 0
        self._last = 0.0
        self._timer: IDelayedCall | None = None
        #: How the direction ended (an end was queued, or the pipe was
        #: stopped), once it has.
        self.ended: str | None = None
        self._holds: set[object] = set()
        self._reactor = link.proxy._reactor
        #: While faults act on a chunk: an end one of them asked for.
        self._feeding = False
        self._ending: tuple[str, float] | None = None
        #: Whether a reset waits until what was written is sent.
        self._draining = False
        #: A reset waited RESET_WAIT for a receiver that did not read.
        self._forced = False

    def __repr__(self) -> str:
        return (
            f"<cleanconn proxy pipe {self.direction.name}: {self._queued} bytes queued>"
        )

    def now(self) -> float:
        """The reactor's time."""
        return self._reactor.seconds()

    # Bytes in -------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """What the source sent."""
        if self.ended is not None:
            return
        direction = self.direction
        dest = self.dest
        if not direction.faults and not self._queue and dest is not None:
            direction.bytes += len(data)
            dest.transport.write(data)  # type: ignore[union-attr]
            return
        pieces = [(0.0, data)]
        rng = self.link.proxy._rng
        self._feeding = True
        try:
            for fault in direction.faults:
                pieces = fault.pieces(self, pieces, rng)
                if not pieces:
                    break
        finally:
            self._feeding = False
        now = self.now()
        for delay, piece in pieces:
            self._push(now + delay, _DATA, piece)
        ending, self._ending = self._ending, None
        if ending is not None:  # after the pieces it let through
            how, delay = ending
            self._push(now + delay, _EOF, how)

    def source_ended(self, how: str) -> None:
        """The source closed (``"eof"``) or was reset (``"reset"``). A reset
        after the source's close passes on too, as it would over a network:
        after what the pipe still holds, in place of that close if it is
        still held back."""
        if self.ended == _EOF and how == RESET:
            queue = self._queue
            if queue and queue[-1][1] == _EOF:  # the close, held back: last
                queue.pop()
            self.ended = None
        if self.ended is not None:
            return
        self.ended = how
        faults = self.direction.faults
        dest = self.dest
        if (
            not faults
            and not self._queue
            and dest is not None
            and (how != RESET or not unsent_bytes(dest.transport))
        ):
            self.link.ended(self, how)  # nothing held back: at once
            return
        delay = max((f.end_delay() for f in faults), default=0.0)
        self._push(self.now() + delay, _EOF, how)

    def end_by_fault(self, how: str, delay: float, at_once: bool = False) -> None:
        """A fault ends the connection (close or reset) after ``delay``;
        ``at_once``, before what the faults still hold back (dropped, as a
        reset drops what is in flight). A sender's half-close does not keep
        a fault from ending the connection."""
        if self.ended is not None and self.ended != _EOF:
            return
        self.ended = how
        if at_once:
            self._queue.clear()
            self._queued = 0
            self._last = 0.0
            timer, self._timer = self._timer, None
            if timer is not None and timer.active() and not self._draining:
                timer.cancel()
        extra = max((f.end_delay() for f in self.direction.faults), default=0.0)
        if self._feeding:
            self._ending = (how, delay + extra)
        else:
            self._push(self.now() + delay + extra, _EOF, how)

    # Holding the source back -------------------------------------------------

    def hold(self, why: object) -> None:
        """Stop reading from the source (for ``why``)."""
        holds = self._holds
        if why not in holds:
            holds.add(why)
            if len(holds) == 1:
                with contextlib.suppress(Exception):
                    self.source.transport.pauseProducing()  # type: ignore[union-attr]

    def release(self, why: object) -> None:
        """Read from the source again, unless held for something else."""
        holds = self._holds
        if why in holds:
            holds.discard(why)
            if not holds and not self.source.lost:
                with contextlib.suppress(Exception):
                    self.source.transport.resumeProducing()  # type: ignore[union-attr]

    # Delivery ---------------------------------------------------------------------

    def _push(self, at: float, kind: str, item: Any) -> None:
        at = max(at, self._last)
        self._last = at
        self._queue.append((at, kind, item))
        if kind == _DATA:
            self._queued += len(item)
            if self._queued > HIGH_WATER:
                self.hold(_QUEUE)
        if self._timer is None:
            self._schedule()

    def _schedule(self) -> None:
        if self._queue and self.dest is not None and not self._draining:
            delay = max(self._queue[0][0] - self.now(), 0.0)
            self._timer = self._reactor.callLater(delay, self._run)

    def _run(self) -> None:
        self._timer = None
        dest = self.dest
        if dest is None:
            return
        queue = self._queue
        now = self.now()
        wrote = False
        while queue and queue[0][0] <= now:
            _, kind, item = queue[0]
            if wrote:
                # One piece at a time: the next one is written two reactor
                # turns later, once this one is sent and the receiver (in
                # this process) has read it, so that each arrives alone.
                self._timer = self._reactor.callLater(0, self._turn)
                return
            if (
                kind == _EOF
                and item == RESET
                and not self._forced
                and unsent_bytes(dest.transport)
            ):
                # A reset drops what is unsent: it waits until what was
                # written is sent (a close sends it first by itself), for
                # RESET_WAIT at most: a receiver that does not read would
                # hold it back for good.
                self._wait_until_sent(dest)
                return
            _, kind, item = queue.popleft()
            if kind == _DATA:
                self._queued -= len(item)
                self.direction.bytes += len(item)
                if not dest.lost:
                    dest.transport.write(item)  # type: ignore[union-attr]
                    wrote = True
            else:
                self.link.ended(self, item)
                queue.clear()
                self._queued = 0
                break
        if self._queued <= HIGH_WATER // 2:
            self.release(_QUEUE)
        self._schedule()

    def _turn(self) -> None:
        self._timer = self._reactor.callLater(0, self._run)

    def _wait_until_sent(self, dest: ProxyLeg) -> None:
        """Run again once ``dest``'s transport has sent all it holds."""
        self._draining = True

        transport: Any = dest.transport

        def sent() -> None:
            self._draining = False
            timer, self._timer = self._timer, None
            if timer is not None and timer.active():
                timer.cancel()
            if self.dest is dest:
                self._run()

        def late() -> None:
            self._timer = None
            self._forced = True
            with contextlib.suppress(Exception):
                transport.unregisterProducer()
            sent()

        dest.let_go()
        with contextlib.suppress(Exception):  # lost meanwhile: stopped then
            transport.registerProducer(_Drained(transport, sent), False)
        if self._draining and self._timer is None:
            self._timer = self._reactor.callLater(RESET_WAIT, late)

    def connected(self, dest: ProxyLeg) -> None:
        """The destination leg is connected: deliver what waits."""
        self.dest = dest
        if self._queue and self._timer is None:
            self._schedule()

    def stop(self) -> None:
        """Deliver nothing more (the connection is over, or the proxy is)."""
        if self.ended is None or self.ended == _EOF:  # nothing more is queued
            self.ended = _STOPPED
        self._draining = False
        self._queue.clear()
        self._queued = 0
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()
        self.direction._pipes.pop(self, None)


@implementer(IPushProducer)
class _Valve:
    """What a destination transport pauses: its pipe's source."""

    def __init__(self, pipe: Pipe) -> None:
        self._pipe = pipe

    def pauseProducing(self) -> None:
        self._pipe.hold(self)

    def resumeProducing(self) -> None:
        self._pipe.release(self)

    def stopProducing(self) -> None:
        """The destination is gone: nothing to do here."""


@implementer(IPullProducer)
class _Drained:
    """
    Registered (as a pull producer) with a transport that has bytes to
    send: Twisted asks it for more each time its buffer is empty, and then
    it lets go and calls ``then``. No polling: the transport says when.
    """

    def __init__(self, transport: Any, then: Callable[[], object]) -> None:
        self._transport = transport
        self._then = then

    def resumeProducing(self) -> None:
        if unsent_bytes(self._transport):
            return  # asked at once on registering
        with contextlib.suppress(Exception):
            self._transport.unregisterProducer()
        self._then()

    def stopProducing(self) -> None:
        """The transport is gone: nothing more to wait for."""


@implementer(IHalfCloseableProtocol)
class ProxyLeg(Protocol):
    """One leg of a proxied connection: the client's (``"down"``), accepted
    by the proxy, or the server's (``"up"``), made by it."""

    def __init__(self, link: _Link, side: str) -> None:
        self.link = link
        self.side = side
        self.out: Pipe | None = None  # what it reads goes there
        self.lost = False

    def connectionMade(self) -> None:
        # Each write its own segment, sent at once: Nagle's algorithm would
        # merge the pieces of a slicer (and delay small writes).
        no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if no_delay is not None:  # TCP, not a UNIX socket
            with contextlib.suppress(OSError):
                no_delay(True)
        self.link.made(self)

    def dataReceived(self, data: bytes) -> None:
        out = self.out
        if out is not None:
            out.feed(data)

    def readConnectionLost(self) -> None:
        if self.out is not None:
            self.out.source_ended(_EOF)

    def writeConnectionLost(self) -> None:
        """Our half-close is done."""

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost = True
        self.link.lost(self, reason)

    def let_go(self) -> None:
        """
        Unregister the producer of its transport (the other leg's valve):
        Twisted closes a transport whose producer is paused only once the
        producer unregisters (when the buffer drains it resumes the producer
        instead), so every close of a leg first lets go of it.
        """
        transport: Any = self.transport
        if transport is not None and not self.lost:
            with contextlib.suppress(Exception):
                transport.unregisterProducer()

    def close(self, abort: bool = False) -> None:
        """Close the leg: gracefully (what is written is sent first), or
        with a reset (``abort``)."""
        transport: Any = self.transport
        if transport is None or self.lost:
            return
        self.let_go()
        if abort:
            (getattr(transport, "abortConnection", None) or transport.loseConnection)()
        else:
            transport.loseConnection()


class _Link:
    """One connection through the proxy: its two legs and two pipes."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self.down = ProxyLeg(self, "down")
        self.up: ProxyLeg | None = None
        self.upstream = Pipe(self, proxy.upstream, self.down)
        self.down.out = self.upstream
        self.downstream: Pipe | None = None
        self.connecting: Deferred[Any] | None = None
        #: When the connect to the server started (see :func:`ticket`).
        self.since = 0
        #: The proxy cancelled the connect (so it is no failure to report).
        self._cancelled = False
        self._eofs = 0

    def made(self, leg: ProxyLeg) -> None:
        proxy = self.proxy
        if proxy._closing:
            # Made after the exit began (an endpoint that could not cancel
            # its connect): nothing passes through it any more.
            leg.close(abort=True)
            return
        if leg is self.down:
            proxy.connections += 1
            proxy._links[self] = None
            proxy.upstream._pipes[self.upstream] = None
            for fault in proxy.upstream.faults:
                fault.started(self.upstream)
            connecting = proxy._connect(self)
            if not connecting.called:  # else it failed at once
                self.connecting = connecting
            return
        self.up = leg
        self.connecting = None
        downstream = self.downstream = Pipe(self, proxy.downstream, leg)
        leg.out = downstream
        downstream.connected(self.down)
        proxy.downstream._pipes[downstream] = None
        for fault in proxy.downstream.faults:
            fault.started(downstream)
        for pipe, dest in ((self.upstream, leg), (downstream, self.down)):
            with contextlib.suppress(Exception):
                dest.transport.registerProducer(_Valve(pipe), True)  # type: ignore[union-attr]
        self.upstream.connected(leg)

    def failed(self, reason: Failure) -> None:
        """The server could not be reached: close the client's leg."""
        self.connecting = None
        if not self._cancelled:
            self.proxy.failures.append(reason.value or Exception(reason))
        self.close()

    def cancel_connect(self) -> bool:
        """Stop connecting to the server, if it still is; whether it was."""
        connecting, self.connecting = self.connecting, None
        if connecting is None or connecting.called:
            return False
        self._cancelled = True
        connecting.cancel()
        return True

    def ended(self, pipe: Pipe, how: str) -> None:
        """``pipe`` delivered its end: ``"eof"``, ``CLOSE`` or ``RESET``."""
        if how == RESET:
            self.reset()
        elif how == CLOSE:
            self.close()
        else:  # the sender closed its side: so does the proxy, to the receiver
            self._eofs += 1
            dest = pipe.dest
            if self._eofs >= 2 or dest is None or dest.lost or pipe.source.lost:
                if dest is not None:
                    dest.close()
                if self._eofs >= 2:
                    self.close()
            else:
                dest.let_go()
                with contextlib.suppress(Exception):
                    dest.transport.loseWriteConnection()  # type: ignore[union-attr]

    def lost(self, leg: ProxyLeg, reason: Failure) -> None:
        clean = reason is None or reason.check(ConnectionDone)  # type: ignore[no-untyped-call]
        out = leg.out
        if out is not None:
            out.source_ended(_EOF if clean else RESET)
            out.release(_QUEUE)
        into = self.downstream if leg is self.down else self.upstream
        if into is not None and into.dest is leg:
            into.stop()  # nothing more can reach this leg
        if self.down.lost and (self.up is None or self.up.lost):
            for pipe in (self.upstream, self.downstream):
                if pipe is not None:
                    pipe.stop()
            self.proxy._links.pop(self, None)
            self.cancel_connect()

    def close(self) -> None:
        for leg in (self.down, self.up):
            if leg is not None:
                leg.close()
        self.cancel_connect()

    def reset(self) -> None:
        for leg in (self.down, self.up):
            if leg is not None:
                leg.close(abort=True)
        self.cancel_connect()


class _DownFactory(Factory):
    noisy = False

    def __init__(self, proxy: Proxy) -> None:
        self._proxy = proxy

    def buildProtocol(self, addr: IAddress | None) -> ProxyLeg:
        return _Link(self._proxy).down


class _UpFactory(Factory):
    noisy = False

    def __init__(self, link: _Link) -> None:
        self._link = link

    def buildProtocol(self, addr: IAddress | None) -> ProxyLeg:
        return ProxyLeg(self._link, "up")


class Proxy:
    """
    A proxy made by :func:`~cleanconn.proxied`: give it to
    :func:`~cleanconn.connected`, :func:`~cleanconn.http_client` or
    :func:`~cleanconn.base_url` as you would the server's port.

    :ivar port: the proxy's own listening port (a
        :class:`~cleanconn.ServingPort`).
    :ivar upstream: the client-to-server :class:`Direction`.
    :ivar downstream: the server-to-client :class:`Direction`.
    :ivar seed: the seed of its random numbers (jitter, slice sizes): pass
        it as ``seed=`` to repeat a run exactly.
    :ivar connections: how many connections it accepted.
    :ivar failures: why each connection to the server that failed did.
    """

    def __init__(self, target: object, seed: int, reactor: CleanconnReactor) -> None:
        self.target = target
        self.seed = seed
        self._random: random.Random | None = None
        self._reactor = reactor
        self.upstream = Direction(self, "upstream")
        self.downstream = Direction(self, "downstream")
        self.connections = 0
        self.failures: list[BaseException] = []
        self.port: ServingPort[Any] = ServingPort(_DownFactory(self), None)
        self.port._reactor = reactor
        self._links: dict[_Link, None] = {}
        self._up = ConnectionSet(on_made=self._up_made)
        self._endpoint: IStreamClientEndpoint | None = None
        #: The serving() port the target is (or a proxy's port): the server
        #: side of each connection to it is closed and waited for too.
        self._serving: ServingPort[Any] | None = None
        if type(target) is ServingPort:
            self._serving = target
        elif type(target) is Proxy:
            self._serving = target.port
        #: Those server sides, while open; and claims of ones not seen yet.
        self._peers: dict[Tracked, None] = {}
        self._claims: dict[Deferred[Tracked], None] = {}
        #: Whether it refuses new connections (see :meth:`down`).
        self.is_down = False
        #: The stop of a :meth:`down` (awaited by :meth:`up`).
        self._stopped: Deferred[None] | None = None
        #: The scope's exit has begun: no new connection passes.
        self._closing = False

    def __repr__(self) -> str:
        faults = [
            f"{d.name}: {', '.join(f.name for f in d.faults)}"
            for d in (self.upstream, self.downstream)
            if d.faults
        ]
        return (
            f"<cleanconn proxy to {_describe(self.target)}, "
            f"{'; '.join(faults) or 'no faults'}, seed={self.seed}>"
        )

    @property
    def _rng(self) -> random.Random:
        """The faults' random numbers, from :attr:`seed` (made when a fault
        first needs one)."""
        rng = self._random
        if rng is None:
            rng = self._random = random.Random(self.seed)
        return rng

    def getHost(self) -> IAddress:
        """The proxy's address (where clients connect)."""
        return self.port.getHost()

    @property
    def tls(self) -> Any:
        """The target's :class:`~cleanconn.ThrowawayCA`, if it serves TLS:
        TLS passes through the proxy, so clients trust the same CA."""
        return getattr(self.target, "tls", None)

    def add(self, *faults: Fault) -> None:
        """Add ``faults`` to both directions."""
        self.upstream.add(*faults)
        self.downstream.add(*faults)

    def clear(self) -> None:
        """Remove every fault, in both directions."""
        self.upstream.clear()
        self.downstream.clear()

    async def down(self) -> None:
        """
        Refuse new connections, as a server that went away does: the proxy
        stops listening (clients get "connection refused"). Connections
        already made go on; add :func:`~cleanconn.reset_peer` to end them too.
        """
        if self._closing:
            raise self._ended("down()")
        if self.is_down:
            return
        self.is_down = True
        stopped = self._stopped = self.port.stopListening()
        await stopped

    async def up(self) -> None:
        """
        Accept connections again, on the same address.

        :raises CannotListenError: something else took the port meanwhile.
        """
        if self._closing:
            raise self._ended("up()")
        if not self.is_down:
            return
        if self._stopped is not None and not self._stopped.called:
            await self._stopped  # a down() not awaited: let it finish
        if self._closing:  # the exit began meanwhile
            raise self._ended("up()")
        port = self.port
        old: Any = port._port
        address: Any = port.getHost()
        reactor: Any = self._reactor
        port._port = reactor.listenTCP(
            address.port, old.factory, backlog=DEFAULT_BACKLOG, interface=address.host
        )
        port._stop = None
        self.is_down = False

    def _ended(self, what: str) -> ScopeClosed:
        return ScopeClosed("proxied()", f"proxy.{what}")

    def _connect(self, link: _Link) -> Deferred[Any]:
        assert self._endpoint is not None
        factory = tracking_factory(_UpFactory(link), self._up, "client")
        link.since = ticket()
        connecting: Deferred[Any] = self._endpoint.connect(factory)
        connecting.addErrback(link.failed)
        return connecting

    def _up_made(self, conn: Tracked) -> None:
        """A leg to the server is connected: when the server is a serving()
        port, find the server side of that connection, to close and wait
        for at the exit, as connected() does."""
        port = self._serving
        if port is None or port.closed or conn.lost:
            return
        if conn.key is None:
            conn.key = local_key(conn.transport)
        if conn.key is None:  # no address to tell it by: serving() closes it
            return
        leg: Any = conn.wrapped
        found = matcher_of(port).claim(conn, leg.link.since)
        if isinstance(found, Tracked):
            self._add_peer(found)
            return
        claims = self._claims
        claims[found] = None

        def claimed(peer: Tracked) -> None:
            claims.pop(found, None)
            self._add_peer(peer)

        def cancelled(reason: Failure) -> None:
            reason.trap(CancelledError)  # type: ignore[no-untyped-call]

        found.addCallbacks(claimed, cancelled)

    def _add_peer(self, peer: Tracked) -> None:
        peers = self._peers
        peers[peer] = None
        peer.when_lost(lambda _: peers.pop(peer, None))


def _describe(target: object) -> str:
    if isinstance(target, ServingPort):
        return format_address(target.getHost())
    return safe_repr(target) if not isinstance(target, str) else target


@implementer(IStreamClientEndpoint)
class _Direct:
    """
    Connects to a serving() port's address straight with ``connectTCP()``
    or ``connectUNIX()``: no endpoint's wrapping protocol between the leg
    and its transport. A UNIX socket is bound to a unique abstract name
    first (Linux autobind, as :func:`~cleanconn.connected` does), so that
    the port tells the proxy's connections by their address.

    The Deferred :meth:`connect` returns only ever fails (the leg itself
    says when it is connected); cancelling it stops the connect.
    """

    def __init__(self, reactor: Any, address: Any) -> None:
        self._reactor = reactor
        self._address = address

    def connect(self, factory: Any) -> Deferred[Any]:
        # Twisted's connect timeout is kept: a leg's connect is bounded as
        # a client's over a real network would be, not by a scope's entry.
        connector: Any = connect_to(self._reactor, self._address, factory, timeout=30)

        def stop(_: object) -> None:
            if connector.state == "connecting":
                connector.stopConnecting()

        connecting: Deferred[Any] = Deferred(stop)

        def failed(_: object, reason: Failure) -> None:
            if not connecting.called:
                connecting.errback(reason)

        factory.clientConnectionFailed = failed
        return connecting


def _endpoint_for(target: object, reactor: Any) -> IStreamClientEndpoint:
    if isinstance(target, ServingPort) or (
        hasattr(target, "getHost") and not IStreamClientEndpoint.providedBy(target)
    ):
        address: Any = getattr(target, "getHost")()  # noqa: B009
        if not is_unix(address):
            tcp_target(address, "proxied()")  # a TCP address, or TypeError
        return _Direct(reactor, address)
    if isinstance(target, str):
        return clientFromString(reactor, target)  # type: ignore[no-untyped-call,no-any-return]
    if IStreamClientEndpoint.providedBy(target):
        return target
    raise TypeError(
        "proxied() takes the server to proxy: a port from serving() (or "
        "anything with getHost()), a client endpoint string such as "
        f"'tcp:127.0.0.1:8080', or an IStreamClientEndpoint; got {target!r}"
    )


class _Proxied(_Serving):
    name = "proxied()"

    def __init__(
        self,
        target: object,
        faults: Iterable[Fault],
        upstream: Iterable[Fault],
        downstream: Iterable[Fault],
        seed: int | None,
        reactor: CleanconnReactor | None,
        timeout: float,
    ) -> None:
        both = [_check_fault(f, "proxied(faults=...)") for f in faults]
        ups = [_check_fault(f, "proxied(upstream=...)") for f in upstream]
        downs = [_check_fault(f, "proxied(downstream=...)") for f in downstream]
        if seed is None:
            seed = random.getrandbits(32)
        elif isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"proxied(): seed must be an int, got {seed!r}")
        # What serving()'s scope needs, without the port it would make: the
        # proxy's own port replaces it.
        Scope.__init__(self, reactor, timeout)
        self._place(None, None, False)
        endpoint = _endpoint_for(target, self.reactor)
        proxy = self._proxy = Proxy(target, seed, self.reactor)
        proxy._endpoint = endpoint
        self._port = proxy.port
        proxy.upstream.add(*both, *ups)
        proxy.downstream.add(*both, *downs)

    def _enter(self) -> Any:
        entered = super()._enter()  # plain TCP: the proxy never speaks TLS
        if isinstance(entered, Deferred):  # pragma: no cover - TCP listens at once
            return entered.addCallback(lambda _: self._enter_tls())
        return self._enter_tls()

    def _enter_tls(self) -> Proxy:
        """
        TLS passes through: clients trust the target's CA at this port, and
        the client's handshake is with the server. The proxy's own side of a
        connection has none to wait for: :func:`~cleanconn.connected` finds
        it done.
        """
        port = self._port
        port.tls = self._proxy.tls
        accepted = port._conns.on_made
        if port.tls is not None and accepted is not None:

            def made(conn: Tracked) -> None:
                conn.handshaken = True
                accepted(conn)

            port._conns.on_made = made
        return self._proxy

    def _close(self, closing: Closing) -> None:
        proxy = self._proxy
        proxy._closing = True
        for link in list(proxy._links):
            for pipe in (link.upstream, link.downstream):
                if pipe is not None:
                    pipe.stop()
            for leg in (link.down, link.up):
                if leg is not None:
                    leg.let_go()  # else a paused valve keeps it from closing
            if link.cancel_connect():
                closing.settle(lambda: list(proxy._up.open))
        super()._close(closing)
        closing.close([*proxy._up.open, *proxy._peers])

    def _closed(self, errors: list[BaseException]) -> list[Tracked]:
        proxy = self._proxy
        proxy._links.clear()
        proxy._up.release()
        # A server side not seen yet is serving()'s to close.
        for claim in list(proxy._claims):
            claim.cancel()
        proxy._peers.clear()
        super()._closed(errors)
        return []

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        entered: bool = True,
    ) -> None:
        if exc is not None and entered:
            # The proxy's repr shows the target with safe_repr(): it cannot
            # raise, and add_note() never does.
            add_note(
                exc,
                f"cleanconn: {self._proxy!r} was in the way; pass "
                f"seed={self._proxy.seed} to proxied() to repeat its random faults",
            )
        await super().__aexit__(exc_type, exc, tb, entered)


def proxied(
    target: object,
    *,
    faults: Iterable[Fault] = (),
    upstream: Iterable[Fault] = (),
    downstream: Iterable[Fault] = (),
    seed: int | None = None,
    reactor: CleanconnReactor | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> AbstractAsyncContextManager[Proxy]:
    """
    A TCP proxy to ``target`` for the length of an ``async with`` block,
    with faults on the way.

    .. code-block:: python

        async with serving(factory) as port:
            async with proxied(port, faults=[slicer(1)]) as proxy:
                async with connected(proxy, client_factory) as client:
                    ...  # every write arrives one byte at a time

    It listens on ``127.0.0.1``; each connection it accepts gets a
    connection of its own to ``target``, both over real loopback sockets,
    and the bytes of each direction meet that direction's faults on the
    way. With no faults, bytes go through at once, flow control included.
    Faults can be changed inside the block (:attr:`Proxy.upstream`,
    :attr:`Proxy.downstream`, :meth:`Proxy.add`); they act on every
    connection, and their random numbers come from ``seed``.

    At the exit, for any reason, the proxy stops listening, and both legs
    of every connection through it are closed and waited for (and, when
    ``target`` is a :func:`~cleanconn.serving` port, the server side of
    each), within ``timeout`` (then aborted and reported by
    :class:`~cleanconn.CleanupTimeout`, as every scope does). What its
    faults still held back is dropped. If the block raised, its exception
    gets a note with the seed.

    :param target: a port from :func:`~cleanconn.serving` (or anything with
        ``getHost()``), a client endpoint string, or an
        ``IStreamClientEndpoint``.
    :param faults: faults for both directions.
    :param upstream: faults for client-to-server bytes only.
    :param downstream: faults for server-to-client bytes only.
    :param seed: the seed of the faults' random numbers; a fresh one by
        default (:attr:`Proxy.seed` says which).
    :param reactor: the reactor to use; the global one by default.
    :param timeout: seconds the exit waits for graceful closes.
    """
    scope: Any = _Proxied(target, faults, upstream, downstream, seed, reactor, timeout)
    return scope  # type: ignore[no-any-return]
