"""
``TestCase``: trial's ``TestCase``, whose timeout cancels and unwinds an
``async def`` test instead of abandoning it.
"""

from __future__ import annotations

import inspect
from typing import Any

from twisted.trial import unittest

from ._deadline import Limit, limited

#: How much later than the deadline's last step trial's own timer is set,
#: so that it never fires while a cancelled test is still unwinding.
_TRIAL_MARGIN = 1.0


class TestCase(unittest.TestCase):
    """
    :class:`twisted.trial.unittest.TestCase`, in which trial's timeout
    works for ``async def`` tests the way :func:`deadline` does.

    .. code-block:: python

        class ChatTests(TestCase):
            timeout = 10  # seconds, for every test of the class

            async def test_login(self):
                async with serving(ChatFactory()) as port:
                    async with connected(port, BotFactory()) as bot:
                        await bot.signed_on  # never fires? 10 s, then a clean unwind

    In trial's own ``TestCase``, a test that runs past its timeout is
    failed and abandoned: the coroutine stays suspended where it waits, no
    ``async with`` block exits, and the next test finds a dirty reactor.
    Here an ``async def`` test method (and an ``async def`` ``setUp`` or
    ``tearDown``) runs under :func:`deadline` with trial's timeout: the
    class's or the method's ``timeout`` attribute, or trial's default of
    120 seconds. Past it, the test is cancelled where it waits, every scope
    it is in exits, and the test errors with :class:`DeadlineExceeded`
    (a :class:`twisted.internet.defer.TimeoutError`, as trial's own),
    naming the line it was stuck on and what it awaited.

    Synchronous tests and tests that return Deferreds run exactly as in
    trial's ``TestCase``. For a class with ``async def`` tests, trial's
    own timer is kept as a backstop, set after the longest an unwinding
    deadline can take (``timeout`` plus twice its grace, plus a second).
    """

    _cleanconn_limit: Limit | None = None

    def run(self, result: Any = None) -> Any:
        """Run the test, its ``async def`` methods under trial's timeout."""
        limit = None
        wrapped = []
        for name in dict.fromkeys((self._testMethodName, "setUp", "tearDown")):
            method = getattr(self, name, None)
            if inspect.iscoroutinefunction(method):
                if limit is None:
                    limit = Limit(super().getTimeout())  # type: ignore[no-untyped-call]
                setattr(self, name, limited(method, limit))
                wrapped.append(name)
        self._cleanconn_limit = limit
        try:
            return super().run(result)  # type: ignore[no-untyped-call]
        finally:
            for name in wrapped:
                delattr(self, name)
            self._cleanconn_limit = None

    def getTimeout(self) -> float:
        """
        Trial's timeout; for a test with ``async def`` methods, the longest
        its deadline can take, plus a margin (trial's own timer must not
        fire while a cancelled test unwinds).
        """
        timeout: float = super().getTimeout()  # type: ignore[no-untyped-call]
        limit = self._cleanconn_limit
        if limit is None:
            return timeout
        return limit.longest() + _TRIAL_MARGIN
