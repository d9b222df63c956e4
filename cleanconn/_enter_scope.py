"""``enter_scope()``: enter a scope now, exit it as the test's cleanup."""

from __future__ import annotations

import unittest
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from types import CoroutineType
from typing import Any, Protocol, TypeVar

from twisted.internet.defer import Deferred, ensureDeferred

_T = TypeVar("_T")


class CleanupRegistry(Protocol):
    """What :func:`enter_scope` needs of a test: trial's ``addCleanup``."""

    def addCleanup(
        self, function: Callable[..., object], /, *args: Any, **kwargs: Any
    ) -> None:
        """Call ``function`` when the test ends, waiting for a Deferred."""


async def enter_scope(
    test: CleanupRegistry, scope: AbstractAsyncContextManager[_T]
) -> _T:
    """
    Enter ``scope`` now; exit it when ``test`` ends, as a cleanup.

    .. code-block:: python

        class EchoTests(TestCase):
            async def setUp(self):
                self.port = await enter_scope(self, serving(EchoFactory()))
                self.client = await enter_scope(
                    self, connected(self.port, ClientFactory.forProtocol(Echo))
                )

    It is what unittest's ``enterAsyncContext`` does, for trial's
    ``TestCase``: the value the scope yields is returned, and the exit is
    registered with ``test.addCleanup``. It runs when the test method has
    ended, whether it passed, failed or errored (and if ``setUp`` raises
    after this call), in the reverse order of entering, each exit waited
    for before the next one starts. Trial runs cleanups *before*
    ``tearDown`` (unittest runs them after): ``tearDown`` sees every scope
    closed. Use it in ``setUp``, in a test, or in a helper either calls;
    any async context manager works, not only cleanconn's.

    The exit is called as if the block ended without an exception (a
    cleanup does not know why the test ended). An exception raised by the
    exit, such as :class:`~cleanconn.CleanupTimeout`, is reported by trial
    as an error of the test.

    :param test: a ``twisted.trial.unittest.TestCase`` (whose cleanups may
        return Deferreds, and are waited for).
    :param scope: an async context manager, such as ``serving(...)``.
    :return: what entering ``scope`` gave.
    :raises TypeError: ``scope`` is not an async context manager, or
        ``test`` cannot wait for a cleanup's Deferred (a standard library
        ``unittest.TestCase``, or trial's ``SynchronousTestCase``).
    """
    cls = type(scope)
    try:
        enter = cls.__aenter__
        exit_ = cls.__aexit__
    except AttributeError:
        raise TypeError(
            f"enter_scope(): {cls.__module__}.{cls.__qualname__} object is "
            "not an async context manager (it has no __aenter__/__aexit__); "
            "pass one, such as cleanconn.serving(...)."
        ) from None
    if not callable(getattr(test, "addCleanup", None)):
        raise TypeError(
            f"enter_scope(): {test!r} has no addCleanup(); pass the test "
            "case (self), a twisted.trial.unittest.TestCase."
        )
    if not _waits_for_deferreds(test):
        raise TypeError(
            f"enter_scope(): {type(test).__qualname__} does not wait for a "
            "cleanup that returns a Deferred, so the scope's exit would not "
            "be waited for. Use twisted.trial.unittest.TestCase."
        )
    value: _T = await enter(scope)

    def exit_scope() -> Deferred[object]:
        exiting = exit_(scope, None, None, None)
        if isinstance(exiting, (CoroutineType, Deferred)):  # as cleanconn's
            return ensureDeferred(exiting)

        async def run() -> object:  # any other awaitable
            return await exiting

        return ensureDeferred(run())

    test.addCleanup(exit_scope)
    return value


def _waits_for_deferreds(test: object) -> bool:
    """Whether ``test``'s cleanups may return a Deferred that is waited for."""
    if not isinstance(test, unittest.TestCase):
        return True  # something else with addCleanup: trust it
    from twisted.trial.unittest import TestCase

    return isinstance(test, TestCase)
