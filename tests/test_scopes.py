"""enter_scope(): a scope entered in setUp (or a test) exits as a cleanup."""

from __future__ import annotations

import unittest
from typing import Any

from twisted.trial.reporter import TestResult
from twisted.trial.unittest import SynchronousTestCase, TestCase

from cleanconn import enter_scope, serving

from . import _scope_cases
from ._helpers import echo_factory


def _run(case: type[TestCase], **attributes: Any) -> TestResult:
    """Run ``case.test`` to completion (trial spins the reactor for it)."""
    test = case("test")
    for name, value in attributes.items():
        setattr(test, name, value)
    result = TestResult()
    test.run(result)
    return result


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
        """A stdlib TestCase would not wait for the exit: TypeError, not entered."""
        scope = serving(echo_factory())
        with self.assertRaises(TypeError):
            await enter_scope(unittest.TestCase(), scope)
        self.assertFalse(scope._entered)
