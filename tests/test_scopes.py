"""enter_scope(): a scope entered in setUp (or a test) exits as a cleanup."""

from __future__ import annotations

import unittest
from collections.abc import Callable, Generator
from types import TracebackType
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.trial.reporter import TestResult
from twisted.trial.unittest import SynchronousTestCase

from cleanconn import enter_scope, serving

from . import _scope_cases
from ._helpers import TestCase, echo_factory


def _run(case: type[TestCase], **attributes: Any) -> TestResult:
    """Run ``case.test`` to completion (trial spins the reactor for it)."""
    test = case("test")
    for name, value in attributes.items():
        setattr(test, name, value)
    result = TestResult()
    test.run(result)
    return result


class Registry:
    """Something other than a TestCase that keeps cleanups: enter_scope()
    trusts it to wait for the Deferred each one returns."""

    def __init__(self) -> None:
        self.cleanups: list[Callable[[], Any]] = []

    def addCleanup(self, function: Callable[..., object], /, *args: Any) -> None:
        self.cleanups.append(lambda: function(*args))


class LateExit:
    """What a plain (not async def) __aexit__ may return: an awaitable that
    is neither a coroutine nor a Deferred, done a reactor turn later."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    def __await__(self) -> Generator[Any, Any, None]:
        yield from deferLater(reactor, 0, self.log.append, "exited").__await__()


class PlainExit:
    """An async context manager whose __aexit__ returns a :class:`LateExit`."""

    def __init__(self) -> None:
        self.log: list[str] = []

    async def __aenter__(self) -> list[str]:
        return self.log

    def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> LateExit:
        return LateExit(self.log)


class CleanupOrderTests(SynchronousTestCase):
    def test_exits_in_reverse_order(self) -> None:
        """Exits run after the test, last entered first, each one awaited."""
        log: list[str] = []
        result = _run(_scope_cases.Ordered, log=log)
        self.assertTrue(result.wasSuccessful(), result.errors)
        self.assertEqual(
            log,
            [
                "enter A",
                "A",
                "enter B",
                "B",
                "test",
                "exit B",
                "B closed",
                "exit A",
                "A closed",
                "tearDown",  # trial runs cleanups before tearDown
            ],
        )

    def test_exits_when_the_test_fails(self) -> None:
        """A failing test's scopes still exit: port stopped, client lost."""
        seen: dict[str, Any] = {}
        result = _run(_scope_cases.Failing, seen=seen)
        self.assertEqual(len(result.failures), 1)
        self.assertEqual(result.errors, [])
        self.assertTrue(seen["port"].closed)
        self.assertEqual(seen["client"].lost_count, 1)

    def test_exits_when_setup_fails(self) -> None:
        """A scope entered before setUp raised still exits."""
        seen: dict[str, Any] = {}
        result = _run(_scope_cases.SetUpFails, seen=seen)
        [(_, error)] = result.errors
        self.assertTrue(error.check(RuntimeError))
        self.assertTrue(seen["port"].closed)


class EnterScopeTests(TestCase):
    async def test_returns_what_the_scope_yields(self) -> None:
        """The value is the scope's: a serving port, listening now."""
        port = await enter_scope(self, serving(echo_factory()))
        self.assertFalse(port.closed)
        self.assertNotEqual(port.getHost().port, 0)

    async def test_rejects_a_non_scope(self) -> None:
        """Something that is not an async context manager is a TypeError."""
        with self.assertRaises(TypeError):
            await enter_scope(self, object())  # type: ignore[arg-type]

    async def test_rejects_a_stdlib_test_case(self) -> None:
        """A stdlib TestCase would not wait for the exit: TypeError saying
        which TestCase to use, and the scope is not entered."""
        scope = serving(echo_factory())
        with self.assertRaises(TypeError) as caught:
            await enter_scope(unittest.TestCase(), scope)
        self.assertEqual(
            str(caught.exception),
            "enter_scope(): TestCase does not wait for a cleanup that returns "
            "a Deferred, so the scope's exit would not be waited for. Use "
            "twisted.trial.unittest.TestCase.",
        )
        self.assertFalse(scope._entered)

    async def test_rejects_what_has_no_add_cleanup(self) -> None:
        """A test argument without addCleanup() is a TypeError, not entered."""
        scope = serving(echo_factory())
        with self.assertRaises(TypeError) as caught:
            await enter_scope(object(), scope)  # type: ignore[arg-type]
        self.assertIn("has no addCleanup()", str(caught.exception))
        self.assertFalse(scope._entered)

    async def test_any_cleanup_registry(self) -> None:
        """Something with addCleanup() that is not a TestCase is trusted:
        its cleanup exits the scope, and returns a Deferred to wait for."""
        registry = Registry()
        port = await enter_scope(registry, serving(echo_factory()))
        (cleanup,) = registry.cleanups
        exiting = cleanup()
        self.assertIsInstance(exiting, Deferred)
        await exiting
        self.assertTrue(port.closed)

    async def test_exit_returning_another_awaitable(self) -> None:
        """An __aexit__ that returns an awaitable other than a coroutine or a
        Deferred is awaited too: the cleanup ends once it is done."""
        registry = Registry()
        log: list[str] = await enter_scope(registry, PlainExit())  # type: ignore[arg-type]
        (cleanup,) = registry.cleanups
        exiting = cleanup()
        self.assertEqual(log, [])
        await exiting
        self.assertEqual(log, ["exited"])
