"""
``datagrams()``: a UDP (or UNIX datagram) socket for the length of a scope,
and :class:`DatagramStream`, the protocol to send and receive with when the
test needs no protocol of its own.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import stat
from collections import deque
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Generic, Literal, overload

from twisted.internet import udp, unix
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IProtocol,
    IProtocolFactory,
    IReactorUDP,
    IReactorUNIXDatagram,
)
from twisted.internet.protocol import (
    AbstractDatagramProtocol,
    ConnectedDatagramProtocol,
    DatagramProtocol,
)
from twisted.python.failure import Failure

from ._addresses import format_address, reachable_host
from ._errors import ScopeClosed, WaitTimeout
from ._reactor import CleanconnReactor
from ._scope import DEFAULT_TIMEOUT, Scope, check_timeout
from ._serving import _private_directory
from ._streams import HIGH_WATER, Waiting, _reactor_of
from ._teardown import Closing

if TYPE_CHECKING:
    from typing_extensions import TypeVar

    # A bare ``DatagramStream`` annotation means ``DatagramStream[Any]``.
    _A = TypeVar("_A", default=Any)
else:
    from typing import TypeVar

    _A = TypeVar("_A")

_D = TypeVar("_D", bound=DatagramProtocol)

#: A UDP address: ``(host, port)``, the host an IP address literal.
UDPAddress = tuple[str, int]

#: Ports whose stopListening() always completes on the next reactor turn.
_BOUNDED_PORTS = (udp.Port, unix.DatagramPort)

#: The largest datagram received whole: for UDP, UDP's largest (Twisted's
#: default, 8192, cuts longer ones short without a word); for a UNIX
#: datagram socket, more than Linux's default socket buffers (about 208 KiB)
#: let one be.
MAX_UDP_DATAGRAM = 65536
MAX_UNIX_DATAGRAM = 1 << 18

_NAME = "datagrams()"


class DatagramStream(DatagramProtocol, Generic[_A]):
    """
    A datagram socket, sent and received on without a protocol class: what
    :func:`datagrams` gives the block when given no protocol.

    .. code-block:: python

        async with datagrams(EchoUDP()) as server, datagrams() as client:
            client.send(b"ping", server.transport.getHost())
            data, sender = await client.receive()

    Datagrams that arrive are queued, in arrival order, until
    :meth:`receive` takes them. One receive waits at a time; it waits as
    long as it takes, unless given ``timeout=`` (then
    :class:`~cleanconn.WaitTimeout`) or cancelled (by a
    :func:`~cleanconn.deadline`, say: the deadline's error then names the
    receive). Either way the queue is left as it was. When more than 1 MiB
    is queued and no receive waits, the stream stops reading from its
    socket, so that a peer that sends more than the test receives fills the
    kernel's buffer (which then drops datagrams, as UDP does) rather than
    this process's memory.

    The type parameter is the sender's address: ``(host, port)`` for UDP,
    a path (or ``None`` for an unbound sender) for a UNIX datagram socket.

    :ivar transport: the socket's port, as for any ``DatagramProtocol``
        (``None`` once it is closed).
    """

    def __init__(self) -> None:
        self._queue: deque[tuple[bytes, _A] | Exception] = deque()
        #: Bytes queued (for when to stop reading).
        self._queued = 0
        self._paused = False
        self._waiter: Waiting[tuple[bytes, _A]] | None = None
        self._timer: IDelayedCall | None = None
        #: The bound address, kept once the socket is closed.
        self._address: IAddress | None = None
        #: The peer of a connected UDP socket, once seen.
        self._peer: UDPAddress | None = None
        #: Whether the socket is closed, or its scope is ending.
        self._ended = False
        #: Why the socket was closed under the stream (an error the reactor
        #: closed it on), raised by every later receive and send.
        self._lost: Exception | None = None

    def __repr__(self) -> str:
        if self._address is None:
            return "<cleanconn.DatagramStream (not bound)>"
        address = self._address
        if type(address) is UNIXAddress:
            where = os.fsdecode(address.name) if address.name else "(unbound)"
        else:
            where = format_address(address)
        peer = self._peer_address()
        if peer is not None:
            where = f"{where} -> {format_address(peer)}"
        queued = len(self._queue)
        if queued:
            where += f", {queued} datagram{'s' if queued > 1 else ''} queued"
        if self._ended:
            where += " (closed)"
        return f"<cleanconn.DatagramStream {where}>"

    @property
    def address(self) -> IAddress:
        """
        The address the socket is bound to: an ``IPv4Address`` or
        ``IPv6Address`` (of type ``"UDP"``), or a ``UNIXAddress``. Still
        there once the socket is closed.

        :raises RuntimeError: the stream was never bound to a socket.
        """
        if self._address is None:
            raise _not_bound("address")
        return self._address

    # Sending ----------------------------------------------------------------

    def send(self, data: bytes, address: _A | IAddress | None = None) -> None:
        """
        Send ``data`` as one datagram to ``address``: ``(host, port)`` (an
        IP address literal, of the socket's family) or an ``IPv4Address``
        or ``IPv6Address`` for UDP, a path or ``UNIXAddress`` for a UNIX
        datagram socket. A connected stream (``datagrams(connect=...)``)
        sends to its peer: leave ``address`` out. It does not wait; UDP
        gives no sign of delivery.

        :raises TypeError: ``data`` is not bytes; ``address`` is missing on
            a stream that is not connected, or is not an address.
        :raises ValueError: ``address`` is not an address this socket can
            send to (a host name, another IP family, port 0, or not the
            peer of a connected stream).
        :raises cleanconn.ScopeClosed: the socket is closed (its
            :func:`datagrams` block ended).
        """
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(
                f"DatagramStream.send() takes bytes, got {type(data).__name__} "
                f"{data!r:.60}; encode text first (data.encode())"
            )
        transport: Any = self.transport
        if transport is None:
            if self._lost is not None:
                raise self._lost
            if self._ended:
                raise ScopeClosed(_NAME, "send()")
            raise _not_bound("send()")
        if type(data) is not bytes:
            data = bytes(data)
        if type(self._address) is UNIXAddress:
            transport.write(data, _unix_path(address, "DatagramStream.send()"))
            return
        peer = self._peer_address()
        if peer is not None:
            if address is not None and _udp_address(
                address, "DatagramStream.send()", None
            ) != (reachable_host(peer[0]), peer[1]):
                raise ValueError(
                    f"DatagramStream.send(): this stream is connected to "
                    f"{format_address(peer)}, and sends there only; got "
                    f"{address!r}. Leave the address out, or send from a "
                    "stream that is not connected."
                )
            transport.write(data)
            return
        if address is None:
            raise TypeError(
                "DatagramStream.send(): this stream is not connected, so each "
                "datagram needs an address: send(data, (host, port)), or "
                "connect the stream with datagrams(connect=(host, port))."
            )
        family = IPv6Address if type(self._address) is IPv6Address else IPv4Address
        transport.write(data, _udp_address(address, "DatagramStream.send()", family))

    # Receiving --------------------------------------------------------------

    def receive(self, *, timeout: float | None = None) -> Deferred[tuple[bytes, _A]]:
        """
        The next datagram and its sender, ``(data, sender)``, in arrival
        order: ``sender`` is ``(host, port)`` for UDP, the sender's path
        for a UNIX datagram socket.

        :raises twisted.internet.error.ConnectionRefusedError: (in the
            Deferred) a connected stream's datagram was refused: nothing
            listens at the peer's address.
        :raises cleanconn.WaitTimeout: (in the Deferred) nothing arrived
            within ``timeout`` seconds.
        :raises cleanconn.ScopeClosed: the socket is closed and nothing is
            left queued (also, in the Deferred, for a receive still waiting
            when its :func:`datagrams` block ends).
        :raises RuntimeError: another receive is still waiting.
        """
        if self._waiter is not None:
            raise RuntimeError(
                f"receive(): another receive() is still waiting on {self!r}; "
                "a stream receives one datagram at a time. Await each "
                "receive() before the next."
            )
        if timeout is not None:
            timeout = check_timeout(timeout, "DatagramStream.receive()")
        queue = self._queue
        if queue:
            item = queue.popleft()
            if isinstance(item, Exception):
                return fail(item)
            self._queued -= len(item[0])
            if self._paused and self._queued <= HIGH_WATER:
                self._resume()
            return succeed(item)
        if self._lost is not None:
            return fail(self._lost)
        if self._ended:
            raise ScopeClosed(_NAME, "receive()")
        if self.transport is None:
            raise _not_bound("receive()")
        if self._paused:  # pragma: no cover - paused only while much is queued
            self._resume()
        waiter = self._waiter = Waiting(self._cancel, self._describe)
        if timeout is not None:
            reactor = _reactor_of(self.transport)
            self._timer = reactor.callLater(timeout, self._expire, timeout)
        return waiter

    # How a receive waits ----------------------------------------------------

    def _done(self) -> Waiting[tuple[bytes, _A]]:
        waiter = self._waiter
        assert waiter is not None
        self._waiter = None
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()
        return waiter

    def _cancel(self, waiter: Deferred[tuple[bytes, _A]]) -> None:
        if self._waiter is waiter:
            self._done()
            waiter.errback(CancelledError())

    def _expire(self, timeout: float) -> None:
        self._timer = None
        waiter = self._done()
        waiter.errback(WaitTimeout(f"receive() on {self!r}", timeout, b""))

    def _describe(self) -> str:
        return f"receive() on {self!r}: no datagram arrived yet"

    def _resume(self) -> None:
        self._paused = False
        transport: Any = self.transport
        if transport is not None:
            transport.startReading()

    def _peer_address(self) -> UDPAddress | None:
        """The peer of a connected UDP socket (Twisted's own record of it)."""
        if self._peer is None:
            self._peer = getattr(self.transport, "_connectedAddr", None)
        return self._peer

    def _end(self) -> None:
        """The socket is closed, or its scope is ending: a receive still
        waiting fails."""
        self._ended = True
        if self._waiter is not None:
            self._done().errback(ScopeClosed(_NAME, "receive()"))

    # DatagramProtocol -------------------------------------------------------

    def startProtocol(self) -> None:
        transport: Any = self.transport
        self._address = transport.getHost()
        self._ended = False
        self._lost = None

    def doStop(self) -> None:
        # Twisted's epoll and poll reactors close a UDP socket that has an
        # error pending (a connected one's refusal), and never call
        # connectionRefused(): see it here, while the socket is still open.
        if not self._ended:
            error = _pending_error(self.transport)
            if error:
                self._refused(error)
        super().doStop()  # type: ignore[no-untyped-call]

    def stopProtocol(self) -> None:
        self._paused = False
        self._end()

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        if type(addr) is bytes:  # a UNIX sender in the abstract namespace
            addr = os.fsdecode(addr)
        if self._waiter is not None:
            self._done().callback((datagram, addr))
            return
        self._queue.append((datagram, addr))
        self._queued += len(datagram)
        if self._queued > HIGH_WATER and not self._paused:
            self._paused = True
            transport: Any = self.transport
            transport.stopReading()

    def connectionRefused(self) -> None:
        """
        A connected stream's datagram came back refused (an ICMP "port
        unreachable"): the receive waiting fails, or else the next one.
        """
        self._refused(errno.ECONNREFUSED)

    def _refused(self, error: int) -> None:
        """
        The socket reported ``error``: a datagram refused, if it is
        ``ECONNREFUSED``. Fail the receive waiting, or else the next one;
        every later one too if the reactor is closing the socket on it
        (:meth:`doStop`).
        """
        transport: Any = self.transport
        closing = transport is not None and not transport.connected
        where = f"receive() on {self!r}"
        closed = ", and the reactor closed the socket on it" if closing else ""
        if error == errno.ECONNREFUSED:
            refused: Exception = ConnectionRefusedError(  # type: ignore[no-untyped-call]
                string=f"{where}: nothing listens at "
                f"{format_address(self._peer_address())}; an ICMP 'port "
                f"unreachable' came back for a datagram sent there{closed}. "
                "Start the peer before sending to it, or check its address"
            )
        else:
            refused = OSError(error, f"{where}: {os.strerror(error)}{closed}")
        if closing:
            self._lost = refused
        if self._waiter is not None:
            self._done().errback(refused)
            return
        queue = self._queue
        if not closing and (not queue or not isinstance(queue[-1], Exception)):
            queue.append(refused)


class _Datagrams(Scope[Any]):
    name = _NAME

    def __init__(
        self,
        protocol: DatagramProtocol | None,
        host: str,
        port: int,
        connect: UDPAddress | IAddress | None,
        unix: bool | str,
        reactor: CleanconnReactor | None,
        timeout: float,
    ) -> None:
        if protocol is None:
            protocol = DatagramStream()
        elif not isinstance(protocol, DatagramProtocol) or isinstance(
            protocol, ConnectedDatagramProtocol
        ):
            raise TypeError(_not_a_datagram_protocol(protocol))
        _check_unbound(protocol)
        self._unix_path = _check_unix(unix, host, port, connect)
        self._connect: UDPAddress | None = None
        if self._unix_path is None:
            family = _check_host(host)
            if type(port) is not int:
                raise TypeError(
                    f"datagrams(): port must be an int (0 for a free port), "
                    f"got {type(port).__name__} {port!r}"
                )
            if not 0 <= port < 65536:
                raise ValueError(
                    f"datagrams(): port must be 0 (a free port) to 65535, got {port}"
                )
            if connect is not None:
                self._connect = _udp_address(connect, "datagrams(): connect", family)
        super().__init__(reactor, timeout)
        needed = IReactorUDP if self._unix_path is None else IReactorUNIXDatagram
        if not needed.providedBy(self.reactor):
            raise TypeError(
                f"datagrams(): the reactor {self.reactor!r} does not provide "
                f"{needed.__name__}, so it cannot bind "
                f"{'a UDP' if needed is IReactorUDP else 'a UNIX datagram'} "
                "socket. Pass a reactor that does (every Twisted reactor on "
                "a POSIX system does), or leave reactor= out."
            )
        self._protocol: DatagramProtocol = protocol
        self._host: str = host
        self._port_number: int = port
        self._tempdir: str | None = None
        self._port: Any = None
        self._address: IAddress | None = None
        self._stop_error: BaseException | None = None

    def _enter(self) -> DatagramProtocol:
        protocol = self._protocol
        _check_unbound(protocol)  # bound since by another scope, say
        reactor: Any = self.reactor
        try:
            path = self._unix_path
            if path is None:
                port = reactor.listenUDP(
                    self._port_number,
                    protocol,
                    interface=self._host,
                    maxPacketSize=MAX_UDP_DATAGRAM,
                )
            else:
                if path is True:
                    self._tempdir = _private_directory()
                    path = os.path.join(self._tempdir, "socket")
                self._unix_path = path
                port = reactor.listenUNIXDatagram(
                    path, protocol, MAX_UNIX_DATAGRAM, mode=0o600
                )
        except BaseException:
            _abandon(protocol)
            raise
        self._port = port
        self._address = port.getHost()
        if self._connect is not None:
            port.connect(*self._connect)
        return protocol

    def _close(self, closing: Closing) -> None:
        port = self._port
        if port is None:  # nothing bound: the protocol is not this scope's
            return
        protocol = self._protocol
        if isinstance(protocol, DatagramStream):
            protocol._end()
        stopped = _stop(port)
        if stopped is not None:
            stopped.addErrback(self._stop_failed)
            closing.wait_for(stopped, self._address, type(port) in _BOUNDED_PORTS)

    def _stop_failed(self, failure: Failure) -> None:
        self._stop_error = failure.value

    def _closed(self, errors: list[BaseException]) -> list[Any]:
        self._port = None
        path = self._unix_path
        if self._tempdir is not None:
            shutil.rmtree(self._tempdir, ignore_errors=True)
            self._tempdir = None
        elif isinstance(path, str) and self._address is not None:
            _unlink_socket(path)
        if self._stop_error is not None:
            errors.append(self._stop_error)
        return []


@overload
def datagrams(
    protocol: None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    connect: UDPAddress | IAddress | None = None,
    unix: Literal[False] = False,
    reactor: CleanconnReactor | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> AbstractAsyncContextManager[DatagramStream[UDPAddress]]: ...


@overload
def datagrams(
    protocol: None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    connect: None = None,
    unix: Literal[True] | str,
    reactor: CleanconnReactor | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> AbstractAsyncContextManager[DatagramStream[str | None]]: ...


@overload
def datagrams(
    protocol: _D,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    connect: UDPAddress | IAddress | None = None,
    unix: bool | str = False,
    reactor: CleanconnReactor | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> AbstractAsyncContextManager[_D]: ...


def datagrams(
    protocol: DatagramProtocol | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    connect: UDPAddress | IAddress | None = None,
    unix: bool | str = False,
    reactor: CleanconnReactor | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> AbstractAsyncContextManager[Any]:
    """
    Bind a datagram socket (UDP on ``127.0.0.1`` by default) for the length
    of an ``async with`` block.

    .. code-block:: python

        async with datagrams(EchoUDP()) as server:  # your DatagramProtocol
            async with datagrams() as client:  # a cleanconn.DatagramStream
                client.send(b"ping", server.transport.getHost())
                data, sender = await client.receive()

    The block gets ``protocol``, bound with ``reactor.listenUDP()``; with no
    protocol, a :class:`DatagramStream`. When the block ends, for any
    reason, the socket stops listening and the exit waits for that
    (``stopListening()``: the protocol's ``stopProtocol()`` has run and the
    socket is closed, so its port can be bound again); a receive still
    waiting fails with :class:`~cleanconn.ScopeClosed`. If the port does
    not report stopping within ``timeout``, the exit raises
    :class:`~cleanconn.CleanupTimeout`. An exception of the block wins over
    any error of the exit. Datagrams up to 64 KiB are received whole (the
    default of ``listenUDP()`` cuts them at 8 KiB).

    :param protocol: a ``DatagramProtocol`` instance, not bound yet; or
        ``None`` (the default) for a :class:`DatagramStream`.
    :param host: the IP address literal to bind: ``"127.0.0.1"`` (the
        default), ``"::1"`` for IPv6, or another local address.
    :param port: the port to bind; ``0`` (the default) for a free one.
    :param connect: ``(host, port)`` (or an ``IPv4Address`` or
        ``IPv6Address``, such as another socket's ``getHost()``) to connect
        the socket to: connected UDP. It then sends only there (a
        stream's :meth:`~DatagramStream.send` needs no address), receives
        only from there, and hears of a datagram refused by the peer's
        host (an ICMP "port unreachable"): ``connectionRefused()``, which
        fails a stream's receive with ``ConnectionRefusedError``.
    :param unix: ``True`` to bind a UNIX datagram socket in a private
        directory (mode 0700) that is created now and removed at exit; or
        the path to bind (its socket file is removed at exit). Not with
        ``host``, ``port`` or ``connect``.
    :param reactor: the reactor to use; the global one by default.
    :param timeout: seconds the exit waits for the socket to stop.
    :raises TypeError: ``protocol`` is not a ``DatagramProtocol``
        instance; an argument has the wrong type; or the reactor cannot
        bind the socket.
    :raises ValueError: ``host`` is not an IP address literal, ``port`` or
        ``connect`` is out of range or of the other IP family, ``protocol``
        is bound already, or ``timeout`` is not a positive, finite number.
    """
    return _Datagrams(protocol, host, port, connect, unix, reactor, timeout)


# Checks -----------------------------------------------------------------------


def _not_a_datagram_protocol(protocol: object) -> str:
    message = (
        "datagrams() needs a DatagramProtocol instance (or None, for a "
        f"cleanconn.DatagramStream), got {protocol!r}."
    )
    if isinstance(protocol, type) and issubclass(protocol, AbstractDatagramProtocol):
        message += (
            f" That is a class: pass an instance, datagrams({protocol.__name__}())."
        )
    elif isinstance(protocol, AbstractDatagramProtocol):
        message += (
            " That is a ConnectedDatagramProtocol, which only "
            "reactor.connectUNIXDatagram() takes."
        )
    elif (
        IProtocolFactory.providedBy(protocol)
        or IProtocol.providedBy(protocol)
        or (isinstance(protocol, type) and IProtocol.implementedBy(protocol))
    ):
        message += (
            " That is for a stream transport (TCP, UNIX stream sockets, TLS): "
            "use cleanconn.serving() and cleanconn.connected() for it."
        )
    return message


def _check_unbound(protocol: DatagramProtocol) -> None:
    if protocol.transport is not None:
        raise ValueError(
            f"datagrams(): {protocol!r} is bound already (to "
            f"{protocol.transport!r}); a protocol instance serves one socket "
            "here: give each datagrams() a new one."
        )


def _check_host(host: object) -> type[IAddress]:
    """The address class of a UDP ``host`` to bind, if it is one."""
    if not isinstance(host, str):
        raise TypeError(
            f"datagrams(): host must be an IP address literal such as "
            f"'127.0.0.1' or '::1', got {type(host).__name__} {host!r}"
        )
    if isIPv6Address(host):
        return IPv6Address
    if isIPAddress(host):
        return IPv4Address
    raise ValueError(
        f"datagrams(): host must be an IP address literal such as "
        f"'127.0.0.1' or '::1', got {host!r}. A socket binds an address, not "
        "a name; for a UNIX datagram socket, pass unix=True or unix=path."
    )


def _check_unix(
    unix: object, host: str, port: int, connect: object
) -> bool | str | None:
    """The ``unix`` argument, valid; ``None`` for UDP."""
    if unix is False:
        return None
    if unix == "":
        raise ValueError(
            "datagrams(): unix='' is no socket path; give unix=True for a "
            "socket in a private temporary directory, or the path to bind"
        )
    if not isinstance(unix, (bool, str)):
        raise TypeError(
            f"datagrams(): unix must be True (a private temporary directory) "
            f"or a socket path, got {unix!r}"
        )
    if connect is not None:
        raise TypeError(
            "datagrams(): connect= is for UDP; a UNIX datagram socket sends "
            "to a path each time: stream.send(data, path)"
        )
    if host != "127.0.0.1" or port != 0:
        raise TypeError(
            "datagrams(): give either host=/port= (UDP) or unix= (a UNIX "
            "datagram socket), not both"
        )
    return unix


def _udp_address(
    address: object, where: str, family: type[IAddress] | None
) -> UDPAddress:
    """
    ``(host, port)`` from a ``(host, port)`` tuple or an ``IPv4Address`` or
    ``IPv6Address``; checked, and of the address class ``family`` if given.
    """
    if isinstance(address, (IPv4Address, IPv6Address)):
        host: object = reachable_host(address.host)
        port: object = address.port
    elif isinstance(address, tuple) and len(address) == 2:
        host, port = address
    else:
        raise TypeError(
            f"{where}: the address must be (host, port), such as "
            f"('127.0.0.1', 9999), or an IPv4Address or IPv6Address, got "
            f"{type(address).__name__} {address!r}"
        )
    if not isinstance(host, str) or type(port) is not int:
        raise TypeError(
            f"{where}: the address must be (host, port) with host a str and "
            f"port an int, got {address!r}"
        )
    if not 0 < port < 65536:
        raise ValueError(f"{where}: the port must be 1 to 65535, got {address!r}")
    if isIPv6Address(host):
        kind: type[IAddress] = IPv6Address
    elif isIPAddress(host):
        kind = IPv4Address
    else:
        raise ValueError(
            f"{where}: {host!r} is not an IP address literal; datagrams go "
            "to addresses, not names: use '127.0.0.1' or '::1'"
        )
    if family is not None and kind is not family:
        bound = "IPv6" if family is IPv6Address else "IPv4"
        other = "::1" if family is IPv4Address else "127.0.0.1"
        raise ValueError(
            f"{where}: {address!r} is not {bound}, and this socket is {bound}; "
            f"bind one of the address's family (datagrams(host={other!r}))"
        )
    return host, port


def _unix_path(address: object, where: str) -> str:
    if isinstance(address, UNIXAddress):
        address = address.name
    if isinstance(address, bytes):
        address = os.fsdecode(address)
    if not isinstance(address, str) or not address:
        raise TypeError(
            f"{where}: a UNIX datagram socket sends to a socket path (a str, "
            f"or a UNIXAddress), got {address!r}"
        )
    return address


def _not_bound(what: str) -> RuntimeError:
    return RuntimeError(
        f"DatagramStream.{what.removesuffix('()')}: this stream is not bound to a "
        "socket yet; use the one `async with datagrams() as stream` gives, or "
        "bind it with reactor.listenUDP()"
    )


# Teardown ---------------------------------------------------------------------


def _stop(port: Any) -> Deferred[Any] | None:
    """
    The port's stop: started now, or the one already under way (a second
    ``stopListening()`` of Twisted's UDP port before the first completed
    would close its socket twice); ``None`` if it has stopped.
    """
    if not getattr(port, "connected", True):
        return None
    pending = getattr(port, "__dict__", {}).get("d")
    if isinstance(pending, Deferred) and not pending.called:
        stopped: Deferred[None] = Deferred()

        def relay(result: object) -> object:
            stopped.callback(None)
            return result

        pending.addBoth(relay)
        return stopped
    try:
        result = port.stopListening()
    except Exception:
        return fail()
    return result if isinstance(result, Deferred) else None


def _abandon(protocol: DatagramProtocol) -> None:
    """
    Close the socket of a port that failed as it started: the protocol's
    ``startProtocol()`` raised inside ``listenUDP()``, which then returned
    no port, and a stop would fail (the protocol never counted the port).
    """
    port: Any = protocol.transport
    if port is None:
        return
    protocol.transport = None
    if getattr(port, "connected", False):
        port.stopReading()
        port.connected = 0
        sock = getattr(port, "socket", None)
        if sock is not None:
            sock.close()


def _pending_error(transport: Any) -> int:
    """The error pending on the socket of ``transport`` (and clear it)."""
    sock = getattr(transport, "socket", None)
    if sock is None:
        return 0
    try:
        return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
    except OSError:
        return 0


def _unlink_socket(path: str) -> None:
    """Remove the socket file the scope bound at ``path``, if it is one."""
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    except (OSError, ValueError):  # gone already, or an abstract name
        pass
