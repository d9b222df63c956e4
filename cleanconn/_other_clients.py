"""
Client ends that other code in this process opened to a serving port: found
so that the port's exit can wait for them (never close them: they are not
cleanconn's).
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet import tcp, unix

from ._addresses import local_key
from ._tracked import Tracked, protocols_of

#: The transports of client connections Twisted makes.
CLIENTS = (tcp.Client, unix.Client)


def find(
    reactor: Any,
    address: object,
    open_keys: set[object],
    unclaimed_keys: set[object],
    unkeyed: bool,
) -> list[Any]:
    """
    The client transports on the reactor (reading or writing), not made by
    a cleanconn scope, connected to the port at ``address`` from the
    address key of one of its server sides still open (``open_keys``;
    ``None`` for a UNIX client without an address) or not claimed by a
    cleanconn client (``unclaimed_keys``, ``unkeyed``).

    A client end on neither of the reactor's lists is not found: one that
    paused reading (and is not writing), or a half-closeable one that has
    already read the server's close. :func:`~cleanconn.clean_reactor` and
    the pytest plugin report such a connection if it is left open.
    """
    keys = unclaimed_keys | (open_keys - {None})
    unkeyed = unkeyed or None in open_keys
    if not keys and not unkeyed:  # pragma: no cover - serving() asks with some
        return []
    found = clients_at(reactor, address, keys, unkeyed)
    return [client for client in found if not made_by_cleanconn(client)]


def clients_at(
    reactor: Any, address: object, keys: set[object], unkeyed: bool
) -> list[Any]:
    """
    The open client transports on ``reactor`` (reading or writing)
    connected to ``address`` from one of the address ``keys`` (or, with
    ``unkeyed``, from a UNIX socket without an address).
    """
    get_readers = getattr(reactor, "getReaders", None)
    get_writers = getattr(reactor, "getWriters", None)
    if get_readers is None or get_writers is None:
        return []
    port_number = getattr(address, "port", None)
    path = _path(address)
    # A dual-stack port sees an IPv4 client as ::ffff:a.b.c.d.
    wanted = {_unmapped(key) for key in keys}
    found = []
    for selectable in {*get_readers(), *get_writers()}:
        if not isinstance(selectable, CLIENTS) or selectable.disconnected:
            continue
        try:
            key = local_key(selectable)
            peer = selectable.getPeer()  # type: ignore[no-untyped-call]
        except Exception:  # closing: its socket is gone
            continue
        if key is None:  # a UNIX client without an address: to this path?
            ours = unkeyed and _path(peer) == path
        else:
            ours = _unmapped(key) in wanted and getattr(peer, "port", 0) == port_number
        if ours:
            found.append(selectable)
    return found


def _unmapped(key: object) -> object:
    """A ``(host, port)`` key with an IPv4-mapped IPv6 host made IPv4."""
    if type(key) is tuple and type(key[0]) is str and key[0].startswith("::ffff:"):
        host = key[0][7:]
        if "." in host:
            return (host, key[1])
    return key


def made_by_cleanconn(transport: Any) -> bool:
    """Whether a cleanconn scope made this connection (it waits for it)."""
    return any(isinstance(p, Tracked) for p in protocols_of(transport))


def _path(address: object) -> bytes | None:
    """A UNIX address's path as bytes (Twisted gives str or bytes)."""
    name = getattr(address, "name", None)
    return os.fsencode(name) if isinstance(name, (str, bytes)) and name else None
