"""
Client ends that other code in this process opened to a serving port: found
so that the port's exit can wait for them (never close them: they are not
cleanconn's).
"""

from __future__ import annotations

import gc
import os
import socket
import struct
from typing import Any

from twisted.internet import tcp, unix

from ._addresses import local_key
from ._tracked import Tracked

#: The transports of client connections Twisted makes.
CLIENTS = (tcp.Client, unix.Client)


def find(
    reactor: Any,
    address: object,
    open_keys: set[object],
    unclaimed_keys: set[object],
    unkeyed: bool,
    remembered: dict[Any, None],
) -> list[Any]:
    """
    The client transports in this process, still open and not made by a
    cleanconn scope, connected to the port at ``address``: those
    ``remembered`` (found as their server side was lost), and those on the
    reactor now whose local address key is among the server sides' still
    open (``open_keys``; ``None`` for a UNIX client without an address)
    or not claimed by a cleanconn client (``unclaimed_keys``, ``unkeyed``).

    A server side still open whose client end is on none of the reactor's
    lists has its client in another process, or paused in both directions
    in this one. Where the system tells (Linux's ``/proc``), a look at
    every live client transport is made only in the second case.
    """
    keys = unclaimed_keys | (open_keys - {None})
    unkeyed = unkeyed or None in open_keys
    found = dict.fromkeys(t for t in remembered if not getattr(t, "disconnected", True))
    if not keys and not unkeyed:
        return list(found)
    clients = clients_at(reactor, address, keys, unkeyed)
    unseen = open_keys - {_key_of(client) for client in clients}
    if unseen and _maybe_here(unseen):
        hidden = [o for o in gc.get_objects() if type(o) in CLIENTS]
        clients += clients_at(hidden, address, unseen, None in unseen)
    found.update(dict.fromkeys(c for c in clients if not made_by_cleanconn(c)))
    return list(found)


def clients_at(
    where: Any, address: object, keys: set[object], unkeyed: bool
) -> list[Any]:
    """
    The open client transports on the reactor ``where`` (reading or
    writing), or among the transports ``where``, connected to ``address``
    from one of the address ``keys`` (or, with ``unkeyed``, from a UNIX
    socket without an address).
    """
    if isinstance(where, list):
        candidates = where
    else:
        get_readers = getattr(where, "getReaders", None)
        get_writers = getattr(where, "getWriters", None)
        if get_readers is None or get_writers is None:
            return []
        candidates = [*{*get_readers(), *get_writers()}]
    port_number = getattr(address, "port", None)
    path = _path(address)
    found = []
    for selectable in candidates:
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
            ours = key in keys and getattr(peer, "port", 0) == port_number
        if ours:
            found.append(selectable)
    return found


def made_by_cleanconn(transport: Any) -> bool:
    """Whether a cleanconn scope made this connection (it waits for it)."""
    protocol = getattr(transport, "protocol", None)
    for _ in range(4):  # under TLS and endpoint wrappers
        if isinstance(protocol, Tracked):
            return True
        protocol = getattr(protocol, "wrappedProtocol", None) or getattr(
            protocol, "_wrappedProtocol", None
        )
    return False


def _key_of(transport: Any) -> object:
    try:
        return local_key(transport)
    except Exception:
        return None


def _path(address: object) -> bytes | None:
    """A UNIX address's path as bytes (Twisted gives str or bytes)."""
    name = getattr(address, "name", None)
    return os.fsencode(name) if isinstance(name, (str, bytes)) and name else None


def _maybe_here(keys: set[object]) -> bool:
    """
    Whether a socket of this process may have one of these local address
    keys: ``False`` only when ``/proc`` says no socket of this process has
    any of the TCP addresses among them (the clients are in another
    process, such as ``curl``); ``True`` when it says one has, or cannot
    say (not Linux; a UNIX client).
    """
    wanted = set()
    for key in keys:
        entry = _proc_form(key)
        if entry is None:
            return True
        wanted.add(entry)
    try:
        inodes = set()
        for fd in os.listdir("/proc/self/fd"):
            try:
                link = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:  # closed meanwhile
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with open(table) as lines:
                next(lines)
                for line in lines:
                    fields = line.split()
                    if fields[1] in wanted and fields[9] in inodes:
                        return True
    except (OSError, IndexError, StopIteration):
        return True
    return False


def _proc_form(key: object) -> str | None:
    """A TCP ``(host, port)`` key as ``/proc/net/tcp`` writes a local
    address (each 32-bit word of the address in the machine's byte order),
    else ``None``."""
    if type(key) is not tuple or len(key) != 2 or key[0] == "unix":
        return None
    host, port = key
    try:
        if ":" in host:
            packed = socket.inet_pton(socket.AF_INET6, host.split("%")[0])
        else:
            packed = socket.inet_pton(socket.AF_INET, host)
    except (OSError, TypeError):
        return None
    words = struct.unpack(f"={len(packed) // 4}I", packed)
    return "".join(f"{word:08X}" for word in words) + f":{port:04X}"
