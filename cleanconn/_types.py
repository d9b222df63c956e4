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


_global_reactor: CleanconnReactor | None = None


def default_reactor(reactor: CleanconnReactor | None) -> CleanconnReactor:
    """
    The given reactor, or the global one, imported when first needed (so
    that a test run can install another reactor before).
    """
    if reactor is not None:
        return reactor
    global _global_reactor
    if _global_reactor is None:
        from twisted.internet import reactor as global_reactor

        _global_reactor = global_reactor  # type: ignore[assignment]
    return _global_reactor  # type: ignore[return-value]


INFINITY = float("inf")


def check_timeout(timeout: float, where: str) -> float:
    """Validate a ``timeout=`` argument."""
    if type(timeout) is float and 0 < timeout < INFINITY:
        return timeout
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(
            f"{where}: timeout must be a number of seconds, "
            f"got {type(timeout).__name__} {timeout!r}"
        )
    if not 0 < timeout < INFINITY:  # also rejects NaN
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
