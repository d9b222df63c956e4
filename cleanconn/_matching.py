"""
Client-to-server matching: which connection a serving port accepted is the
other end of a client connection cleanconn made.
"""

from __future__ import annotations

import itertools
from collections import deque
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress

from ._addresses import address_key, local_key
from ._tracked import Tracked

#: The clock that orders connect starts and server-side losses, shared by
#: every port (a client takes its ticket before it knows which port will
#: answer), so that a server side lost before a client started connecting
#: is never matched to it: the kernel reuses a client port quickly.
_clock = itertools.count()


def ticket() -> int:
    """A client's place in time, taken when it starts connecting."""
    return next(_clock)


class Matcher:
    """
    Pairs the server sides a port accepted with the clients that claim them.

    A server side is matched by the address of its client end (the client's
    ``(host, port)``, or the abstract name of a UNIX client socket); a
    connection without one (a UNIX client elsewhere than Linux) in accept
    order. A client :meth:`claim`\\ s its server side, which is there now or
    comes later, and :meth:`pair` remembers the two protocols for
    ``ServingPort.server_protocol()``.
    """

    __slots__ = (
        "_claimers",
        "_lost_at",
        "_peers",
        "_rejected",
        "_unclaimed",
        "_unkeyed",
        "_unkeyed_claimers",
    )

    def __init__(self) -> None:
        self._unclaimed: dict[object, Tracked] = {}
        self._claimers: dict[object, Deferred[Tracked]] = {}
        self._unkeyed: deque[Tracked] = deque()
        self._unkeyed_claimers: deque[Deferred[Tracked]] = deque()
        #: When each unclaimed server side was lost, by the :func:`ticket` clock.
        self._lost_at: dict[Tracked, int] = {}
        self._rejected: dict[object, BaseException | None] = {}
        self._peers: dict[int, tuple[object, object]] = {}

    # The port's side ----------------------------------------------------------

    def accepted(self, server: Tracked) -> None:
        """``server`` ran ``connectionMade``: give it to its claimer."""
        key = server.key
        if key is None:
            while self._unkeyed_claimers:
                first = self._unkeyed_claimers.popleft()
                if not first.called:
                    first.callback(server)
                    return
            self._unkeyed.append(server)
            return
        waiter = self._claimers.pop(key, None) if self._claimers else None
        if waiter is not None and not waiter.called:
            waiter.callback(server)
        else:
            self._unclaimed[key] = server

    def lost(self, server: Tracked) -> None:
        """``server`` was lost: if nobody claimed it yet, note when."""
        unclaimed = self._unclaimed
        if (unclaimed and unclaimed.get(server.key) is server) or (
            server.key is None and server in self._unkeyed
        ):
            self._lost_at[server] = next(_clock)

    def reject(self, addr: IAddress, error: BaseException | None = None) -> None:
        """The port built no protocol for the client at ``addr`` (its
        factory's ``buildProtocol`` returned ``None``, or raised ``error``)."""
        self._rejected[address_key(addr)] = error

    def rejection(self, client: Tracked) -> tuple[bool, BaseException | None]:
        """Whether the port built no protocol for ``client``'s connection,
        and what its factory raised."""
        key = client.key
        if key is None or key not in self._rejected:
            return False, None
        return True, self._rejected[key]

    # The client's side --------------------------------------------------------

    def claim(self, client: Tracked, since: int) -> Deferred[Tracked] | Tracked:
        """
        The server side of ``client``'s connection, now or later. ``since``
        is the client's :func:`ticket`: a server side lost before it is
        another client's.
        """
        key = client.key
        if key is None:  # not known yet (an entry wait may have taken it)
            key = client.key = local_key(client.transport)
        if key is None:
            while self._unkeyed:
                oldest = self._unkeyed.popleft()
                if not self._stale(oldest, since):
                    return oldest

            def forget_unkeyed(waiter: Deferred[Tracked]) -> None:
                if waiter in self._unkeyed_claimers:
                    self._unkeyed_claimers.remove(waiter)

            waiter: Deferred[Tracked] = Deferred(forget_unkeyed)
            self._unkeyed_claimers.append(waiter)
            return waiter
        peer = self._unclaimed.pop(key, None)
        if peer is not None and not self._stale(peer, since):
            return peer

        def forget(_: Deferred[Tracked]) -> None:
            if self._claimers.get(key) is waiter:
                del self._claimers[key]

        waiter = Deferred(forget)
        self._claimers[key] = waiter
        return waiter

    def forget(self, client: Tracked, waiter: Deferred[Tracked]) -> None:
        """``client`` gave up waiting: a later accept must not fire ``waiter``."""
        key = client.key
        if self._claimers.get(key) is waiter:
            del self._claimers[key]
        elif waiter in self._unkeyed_claimers:
            self._unkeyed_claimers.remove(waiter)

    def pair(self, client: Tracked, server: Tracked) -> None:
        """Remember that ``server`` is the other end of ``client``."""
        # The protocols only, not their wrappers: little is kept after the
        # connection is gone, for server_protocol() after the client's exit.
        self._peers[id(client.wrapped)] = (client.wrapped, server.wrapped)

    def accepted_at(self, key: object) -> Tracked | None:
        """The server side accepted from the client end at ``key`` that no
        cleanconn client claimed, if it is still open."""
        server = self._unclaimed.get(key)
        return None if server is None or server.reason is not None else server

    def peer_of(self, client: object) -> Any:
        """The server-side protocol paired with ``client``, else ``None``."""
        entry = self._peers.get(id(client))
        if entry is None or entry[0] is not client:
            return None
        return entry[1]

    def unclaimed(self) -> tuple[set[object], bool]:
        """The keys of the server sides no cleanconn client claimed, and
        whether there are such server sides without a key."""
        return set(self._unclaimed), bool(self._unkeyed)

    def clear(self) -> None:
        """The port is closed: forget what only matching needed."""
        self._unclaimed.clear()
        self._unkeyed.clear()
        self._rejected.clear()
        self._lost_at.clear()

    def _stale(self, server: Tracked, since: int) -> bool:
        """``server`` was lost before the client took ticket ``since``."""
        lost_at = self._lost_at.pop(server, None)
        return lost_at is not None and lost_at < since
