"""The reactor cleanconn runs on: the interfaces it uses, and the default."""

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
