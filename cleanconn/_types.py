"""Types shared by the public functions."""

from __future__ import annotations

from twisted.internet.interfaces import IReactorCore, IReactorTCP, IReactorTime
from zope.interface import Interface


class CleanconnReactor(IReactorTCP, IReactorTime, IReactorCore, Interface):
    """
    What cleanconn needs of a reactor: TCP, timers and the core loop.

    Every Twisted reactor on a POSIX system provides it, including the
    asyncio reactor. UNIX sockets additionally need ``IReactorUNIX``.
    """


def default_reactor(reactor: CleanconnReactor | None) -> CleanconnReactor:
    """The given reactor, or the global one, imported only when needed."""
    if reactor is not None:
        return reactor
    from twisted.internet import reactor as global_reactor

    return global_reactor  # type: ignore[return-value]


def check_timeout(timeout: float, where: str) -> float:
    """Validate a ``timeout=`` argument."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(
            f"{where}: timeout must be a number of seconds, "
            f"got {type(timeout).__name__} {timeout!r}"
        )
    if not 0 < timeout < float("inf"):  # also rejects NaN
        raise ValueError(
            f"{where}: timeout must be a positive, finite number of seconds "
            f"(it bounds every exit), got {timeout!r}"
        )
    return float(timeout)


def enter_once(entered: bool, name: str) -> None:
    """Refuse to enter a scope object a second time."""
    if entered:
        raise RuntimeError(
            f"this {name} scope was already entered; call {name} again for a new one"
        )
