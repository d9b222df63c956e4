"""
What the ``setUp`` shapes need of a test: ``addCleanup``, and running the
cleanups in reverse order, each Deferred one waited for, as trial does.

trial's own ``TestCase`` machinery costs the same for every contender and
would drown the difference; this is the part a scope's cost depends on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred


class Cleanups:
    """A stand-in for a trial ``TestCase``'s cleanups."""

    def __init__(self) -> None:
        self._cleanups: list[
            tuple[Callable[..., object], tuple[Any, ...], dict[str, Any]]
        ] = []

    def addCleanup(
        self, function: Callable[..., object], /, *args: Any, **kwargs: Any
    ) -> None:
        """Call ``function`` when the test ends, waiting for a Deferred."""
        self._cleanups.append((function, args, kwargs))

    async def run_cleanups(self) -> None:
        """Run the cleanups, the last added first, each one waited for."""
        while self._cleanups:
            function, args, kwargs = self._cleanups.pop()
            result = function(*args, **kwargs)
            if isinstance(result, Deferred):
                await result
