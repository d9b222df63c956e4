"""
Addresses: what identifies a connection's client end, where to connect for
a listening address, and how an address reads in a message.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Any

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.interfaces import IAddress, IConnector

if TYPE_CHECKING:
    from typing import TypeGuard

#: The wildcard address of each IP family, and the loopback address a client
#: connects to for a port bound to it.
WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1"}


def address_key(address: object) -> object:
    """
    What identifies the client end of a connection: ``(host, port)`` for
    TCP; the (auto-bound, Linux) abstract name of a UNIX client socket;
    else ``None``, and connections are matched in accept order.
    """
    if type(address) is IPv4Address:
        return (address.host, address.port)
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if host is not None and port is not None:
        return (host, port)
    name = getattr(address, "name", None)
    if name:
        return ("unix", name)
    return None


def local_key(transport: Any) -> object:
    """The :func:`address_key` of the local end of a client ``transport``."""
    sock = getattr(transport, "socket", None)
    if sock is None:  # TLS: the socket is the transport's under it
        sock = getattr(getattr(transport, "transport", None), "socket", None)
    if sock is None:
        return address_key(transport.getHost())
    # The socket's own name: Twisted's UNIX client getHost() does not report
    # a bound name, and building an address object costs more.
    name = sock.getsockname()
    if type(name) is tuple:
        return name[:2]
    return ("unix", name) if name else None


def key_address(key: object) -> object:
    """The address an :func:`address_key` was made of, for messages: an
    ``IPv4Address`` or ``IPv6Address``, a UNIX path, else the key."""
    if type(key) is tuple and len(key) == 2:
        first, second = key
        if first == "unix":
            return UNIXAddress(second)
        if isinstance(first, str) and isinstance(second, int):
            if ":" in first:
                return IPv6Address("TCP", first, second)
            return IPv4Address("TCP", first, second)
    return key


def connect_to(
    reactor: Any, address: IAddress, factory: Any, *, timeout: float | None = None
) -> IConnector:
    """
    Start connecting to a serving port's ``address`` (TCP or UNIX). By
    default with no timeout of Twisted's: the scope's entry deadline bounds
    the connect (one timer for the entry, not one more per connection).
    A UNIX socket is bound to a unique abstract name first (Linux
    autobind), so that the server side can be matched by address;
    elsewhere connections are matched in accept order instead.
    """
    if is_unix(address):
        connector: IConnector = reactor.connectUNIX(
            address.name, factory, timeout=timeout
        )
        _autobind(connector)
        return connector
    host, port = tcp_target(address, "connected()")
    tcp_connector: IConnector = reactor.connectTCP(host, port, factory, timeout=timeout)
    return tcp_connector


def _autobind(connector: Any) -> None:
    """Bind a UNIX client socket to a unique abstract name (Linux autobind)
    before it connects; elsewhere it stays unbound."""
    with contextlib.suppress(AttributeError, OSError):  # not Linux
        connector.transport.socket.bind("")


def reachable_host(host: str) -> str:
    """A host to connect to for a port bound to ``host``: loopback for a
    wildcard address (``0.0.0.0``, ``::``) of the same family."""
    return WILDCARDS.get(host, host)


def is_unix(address: object) -> TypeGuard[UNIXAddress]:
    """Whether ``address`` is a UNIX socket's."""
    return type(address) is not IPv4Address and isinstance(address, UNIXAddress)


def tcp_target(address: IAddress, scope: str) -> tuple[str, int]:
    """
    The ``(host, port)`` a client connects to for a listening TCP
    ``address``; raises ``TypeError`` naming ``scope`` for any other.
    """
    if type(address) is IPv4Address:
        return WILDCARDS.get(address.host, address.host), address.port
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if not isinstance(host, str) or not isinstance(port, int):
        raise TypeError(
            f"{scope}: cannot derive a client endpoint from the address "
            f"{address!r}; pass a client endpoint (an IStreamClientEndpoint "
            "or a client endpoint string) for this server instead."
        )
    return reachable_host(host), port


def listens_at(address: object, host: object, port: object) -> bool:
    """Whether a port listening on ``address`` accepts at ``host:port``
    (a wildcard address accepts on every host of its family)."""
    if getattr(address, "port", None) != port:
        return False
    bound = getattr(address, "host", None)
    return bound in WILDCARDS or bound == host


def format_address(address: object) -> str:
    """``host:port`` (``[host]:port`` for IPv6), a UNIX path, or the repr."""
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if host is not None and port is not None:
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    if type(address) is UNIXAddress:
        return _unix_name(address.name)
    name = getattr(address, "name", None)
    if name is not None:
        return _unix_name(name)
    if type(address) is tuple and len(address) == 2:  # an address key
        first, second = address
        if first == "unix":
            return _unix_name(second)
        return f"[{first}]:{second}" if ":" in str(first) else f"{first}:{second}"
    return repr(address)


def _unix_name(name: object) -> str:
    """A UNIX socket's name, quoted: its path as text, or ``'@name'`` for a
    Linux abstract name (a leading NUL byte; ``ss`` writes it so too); an
    unbound socket's (no name) says so."""
    if not name:
        return "an unnamed UNIX socket"
    if isinstance(name, bytes):
        if name.startswith(b"\0"):
            return repr("@" + name[1:].decode("utf-8", "backslashreplace"))
        return repr(os.fsdecode(name))
    if isinstance(name, str) and name.startswith("\0"):
        return repr("@" + name[1:])
    return repr(name)
