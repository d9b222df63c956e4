"""deadline() and cleanconn.TestCase: a stuck body is cancelled, unwound, located."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from typing import Any

from twisted.internet import defer, reactor
from twisted.trial import unittest, util
from twisted.trial.reporter import TestResult
from twisted.trial.unittest import SynchronousTestCase

from cleanconn import (
    CleanupTimeout,
    DeadlineExceeded,
    WaitingAt,
    connected,
    connected_many,
    deadline,
    serving,
)

from . import _deadline_cases
from ._helpers import (
    CountingFactory,
    Paused,
    client_factory,
    echo_factory,
    full_serving_port,
)

HERE = os.path.abspath(__file__)
ROOT = os.path.dirname(os.path.dirname(HERE))


def line_of(marker: str, path: str = HERE) -> int:
    """The number of the one line of ``path`` that ends with ``marker``."""
    with open(path) as f:
        [number] = [n for n, line in enumerate(f, 1) if line.rstrip().endswith(marker)]
    return number


def ours() -> list[Any]:
    """The pending DelayedCalls that a deadline scheduled."""
    return [
        call
        for call in reactor.getDelayedCalls()
        if getattr(call.func, "__qualname__", "").startswith("_Watch.")
    ]


async def fails(call: Any) -> DeadlineExceeded:
    """Await ``call()``, which must raise DeadlineExceeded; return it."""
    try:
        await call()
    except DeadlineExceeded as e:
        return e
    raise AssertionError("no DeadlineExceeded")


async def stuck_in_helper() -> None:
    await defer.Deferred()  # stuck: helper


def with_an_empty_cell() -> defer.Deferred[None]:
    """A Deferred whose canceller closes over a variable that is never set."""

    def canceller(_: defer.Deferred[None]) -> None:
        print(unset)  # noqa: F821 - deleted below, on purpose

    unset = None
    del unset  # the canceller's cell for it is empty now
    return defer.Deferred(canceller)


class TestCase(unittest.TestCase):
    """
    trial's own TestCase, with the suite's timeout: these tests count the
    deadline timers on the reactor, and cleanconn's TestCase would add the
    test's own.
    """

    timeout = 20


class InTimeTests(TestCase):
    async def test_returns_its_value(self) -> None:
        """A body that ends in time returns its value."""

        @deadline(5)
        async def body() -> str:
            await defer.succeed(None)
            await defer.Deferred.fromCoroutine(stuck_nowhere())
            return "done"

        self.assertEqual(await body(), "done")

    async def test_one_delayed_call_cancelled_at_the_end(self) -> None:
        """While the body waits there is one DelayedCall of ours; after, none."""
        waiting: defer.Deferred[None] = defer.Deferred()
        seen: list[int] = []

        @deadline(5)
        async def body() -> None:
            seen.append(len(ours()))
            await waiting

        running = defer.ensureDeferred(body())
        self.assertEqual(len(ours()), 1)
        waiting.callback(None)
        await running
        self.assertEqual(ours(), [])

    async def test_error_goes_through_unchanged(self) -> None:
        """An exception raised in time is the same object, not wrapped."""
        error = ValueError("mine")

        @deadline(5)
        async def body() -> None:
            await defer.succeed(None)
            raise error

        with self.assertRaises(ValueError) as caught:
            await body()
        self.assertIs(caught.exception, error)

    async def test_timed_on_the_reactor_given(self) -> None:
        """deadline(reactor=) arms its timer on that reactor, not the global one."""
        delays: list[float] = []

        class Recording:
            """The global reactor, noting the delay of each callLater."""

            def callLater(self, delay: float, *args: Any, **kw: Any) -> Any:
                delays.append(delay)
                return reactor.callLater(delay, *args, **kw)

            def __getattr__(self, name: str) -> Any:
                return getattr(reactor, name)

        @deadline(5, reactor=Recording())  # type: ignore[arg-type]
        async def body() -> str:
            return "done"

        self.assertEqual(await body(), "done")
        self.assertEqual(delays, [5])

    def test_rejects_a_sync_function(self) -> None:
        """Only an async def function can be cancelled where it waits."""

        def sync() -> None:
            pass

        with self.assertRaises(TypeError) as caught:
            deadline(1)(sync)  # type: ignore[arg-type]
        self.assertEqual(
            str(caught.exception),
            f"deadline() decorates an async def function, got {sync!r}: "
            "only a coroutine can be cancelled where it waits",
        )

    def test_rejects_bad_seconds(self) -> None:
        """seconds and grace must be positive, finite numbers."""
        for bad in (0, -1, float("inf"), float("nan")):
            with self.assertRaises(ValueError):
                deadline(bad)
        with self.assertRaises(TypeError):
            deadline("5")  # type: ignore[arg-type]
        with self.assertRaises(ValueError):
            deadline(1, grace=0)


async def stuck_nowhere() -> None:
    await defer.succeed(None)

    async def test_clean_reactor_at_the_top(self) -> None:
        """clean_reactor() at the top of a deadline's body does not report its timer."""
        from cleanconn import clean_reactor, connected, serving

        @deadline(30)
        async def body() -> bytes:
            async with clean_reactor():
                async with serving(echo_factory()) as port, connected(port) as stream:
                    stream.write(b"x")
                    return await stream.readexactly(1)

        self.assertEqual(await body(), b"x")


class FiresTests(TestCase):
    async def test_is_a_twisted_timeout_error(self) -> None:
        """The error is a defer.TimeoutError, so assertFailure() catches it."""

        @deadline(0.2)
        async def body() -> object:
            return await defer.Deferred()

        error = await self.assertFailure(
            defer.ensureDeferred(body()), defer.TimeoutError
        )
        self.assertIsInstance(error, DeadlineExceeded)

    async def test_stuck_inside_scopes(self) -> None:
        """Stuck in connected(): unwound in time, both sides lost, line named."""
        seen: dict[str, Any] = {}

        @deadline(0.5)
        async def body() -> None:
            async with serving(echo_factory()) as port:
                async with connected(port, client_factory()) as client:
                    seen["client"] = client
                    seen["server"] = port.server_protocol(client)
                    await defer.Deferred()  # stuck: scopes

        started = time.monotonic()
        error = await fails(body)
        self.assertLess(time.monotonic() - started, 0.5 + 5 + 2)
        self.assertEqual(seen["client"].lost_count, 1)
        self.assertEqual(seen["server"].lost_count, 1)
        assert error.waiting is not None
        self.assertEqual(error.waiting.filename, HERE)
        self.assertEqual(error.waiting.lineno, line_of("# stuck: scopes"))
        self.assertEqual(error.waiting.function, "body")
        self.assertIn("<Deferred at 0x", error.waiting.awaiting)
        self.assertIn(f"line {line_of('# stuck: scopes')}", str(error))
        self.assertIn("await defer.Deferred()  # stuck: scopes", str(error))
        self.assertIn("every cleanconn scope it was in exited", str(error))
        self.assertFalse(error.abandoned)

    async def test_leaves_no_delayed_call(self) -> None:
        """After it fired, no DelayedCall of the deadline is left."""

        @deadline(0.2)
        async def body() -> None:
            await defer.Deferred()

        await fails(body)
        self.assertEqual(ours(), [])

    async def test_names_the_scope_entry(self) -> None:
        """Stuck entering connected(): the scope and what it waited for."""

        @deadline(0.3)
        async def body() -> None:
            async with serving(echo_factory()) as port:
                port._port.stopReading()  # accepts no connection
                async with connected(port, client_factory()):  # stuck: entry
                    pass

        error = await fails(body)
        assert error.waiting is not None
        self.assertEqual(error.waiting.lineno, line_of("# stuck: entry"))
        self.assertIn(
            "connected() entering, waiting until the server side ran connectionMade",
            error.waiting.awaiting,
        )
        self.assertIn("connection from 127.0.0.1:", error.waiting.awaiting)

    async def test_names_the_innermost_user_frame(self) -> None:
        """The line named is in the helper the body awaits, not the body."""

        @deadline(0.2)
        async def body() -> None:
            await stuck_in_helper()

        error = await fails(body)
        assert error.waiting is not None
        self.assertEqual(error.waiting.lineno, line_of("# stuck: helper"))
        self.assertEqual(error.waiting.function, "stuck_in_helper")

    async def test_follows_a_deferred_of_a_coroutine(self) -> None:
        """Through a Deferred made by ensureDeferred, into its coroutine."""

        @deadline(0.2)
        async def body() -> None:
            await defer.ensureDeferred(stuck_in_helper())

        error = await fails(body)
        assert error.waiting is not None
        self.assertEqual(error.waiting.lineno, line_of("# stuck: helper"))

    async def test_follows_a_deferred_chained_to_another(self) -> None:
        """Through a Deferred paused on the Deferred of a coroutine, into it."""

        @deadline(0.2)
        async def body() -> None:
            chained: defer.Deferred[None] = defer.succeed(None)
            chained.addCallback(lambda _: defer.ensureDeferred(stuck_in_helper()))
            await chained

        error = await fails(body)
        assert error.waiting is not None
        self.assertEqual(error.waiting.lineno, line_of("# stuck: helper"))

    async def test_follows_without_deprecated_twisted_api(self) -> None:
        """Following a coroutine's Deferred warns of nothing Twisted deprecated."""

        @deadline(0.2)
        async def body() -> None:
            await defer.ensureDeferred(stuck_in_helper())

        await fails(body)
        self.assertEqual(self.flushWarnings(), [])

    async def test_names_the_line_in_an_async_context_manager(self) -> None:
        """Stuck entering an @asynccontextmanager: its line is named."""

        @contextlib.asynccontextmanager
        async def stuck_entering() -> AsyncIterator[None]:
            await defer.Deferred()  # stuck: async context manager
            yield

        @deadline(0.2)
        async def body() -> None:
            async with stuck_entering():
                pass

        error = await fails(body)
        assert error.waiting is not None
        self.assertEqual(
            error.waiting.lineno, line_of("# stuck: async context manager")
        )
        self.assertTrue(error.waiting.awaiting.startswith("<Deferred at 0x"))

    async def test_names_the_deferred_the_body_awaits(self) -> None:
        """Awaiting a Deferred paused on another: the awaited one is named."""
        inner: defer.Deferred[None] = defer.Deferred()
        outer: defer.Deferred[None] = defer.succeed(None)
        outer.addCallback(lambda _: inner)

        @deadline(0.2)
        async def body() -> None:
            await outer

        error = await fails(body)
        assert error.waiting is not None
        self.assertEqual(
            error.waiting.awaiting,
            f"<Deferred at 0x{id(outer):x} waiting on Deferred at 0x{id(inner):x}>",
        )

    async def test_stuck_in_async_for(self) -> None:
        """Stuck in an async for: the body's line, awaiting the generator's step."""

        async def ticks() -> AsyncIterator[None]:
            await defer.Deferred()
            yield None

        @deadline(0.2)
        async def body() -> None:
            async for _ in ticks():  # stuck: async for
                pass

        error = await fails(body)
        assert error.waiting is not None
        self.assertEqual(error.waiting.lineno, line_of("# stuck: async for"))
        self.assertTrue(
            error.waiting.awaiting.startswith("<async_generator_asend object at 0x")
        )

    async def test_awaiting_a_deferred_whose_canceller_has_an_empty_cell(self) -> None:
        """A canceller closing over a variable never set: the Deferred is named."""

        @deadline(0.2)
        async def body() -> None:
            await with_an_empty_cell()

        error = await fails(body)
        assert error.waiting is not None
        self.assertTrue(error.waiting.awaiting.startswith("<Deferred at 0x"))

    async def test_reports_what_the_scopes_reported(self) -> None:
        """A scope exit's CleanupTimeout is in the error and its message."""

        @deadline(0.3, grace=3)
        async def body() -> None:
            async with serving(CountingFactory(Paused)) as port:
                # By address: the client's end alone is the scope's to close.
                address = f"tcp:127.0.0.1:{port.getHost().port}"
                async with connected(address, client_factory(), timeout=0.3) as client:
                    client.transport.write(b"x" * (8 * 1024 * 1024))
                    await defer.Deferred()

        error = await fails(body)
        [cleanup] = error.cleanup_errors
        self.assertIsInstance(cleanup, CleanupTimeout)
        self.assertIn("but reported:\n  - CleanupTimeout:", str(error))


class ScopeEntryTests(TestCase):
    """
    What a deadline says a stuck scope entry waits for, word for word (the
    line it names is tested above, in ``FiresTests``).
    """

    async def test_connected_waiting_for_the_server_side(self) -> None:
        """connected(): the scope, what it awaits, and the client's address."""

        @deadline(0.3)
        async def body() -> None:
            async with serving(echo_factory()) as port:
                port._port.stopReading()  # accepts no connection
                async with connected(port, client_factory()):
                    pass

        error = await fails(body)
        assert error.waiting is not None
        self.assertRegex(
            error.waiting.awaiting,
            r"^connected\(\) entering, waiting until the server side ran "
            r"connectionMade \(connection from 127\.0\.0\.1:[0-9]+\)$",
        )

    async def test_connected_waiting_for_its_connect(self) -> None:
        """connected(): a connect that never completes is named by its port."""
        listening: list[Any] = []

        @deadline(0.3)
        async def body() -> None:
            async with full_serving_port() as port:
                listening.append(port)
                async with connected(port, client_factory()):
                    pass

        error = await fails(body)
        assert error.waiting is not None
        [port] = listening
        self.assertEqual(
            error.waiting.awaiting,
            f"<connected() entering, waiting until the connection to {port!r} "
            "was made>",
        )

    async def test_connected_many_waiting_for_the_server_sides(self) -> None:
        """connected_many(): its words, as they were when the deadline fired."""

        @deadline(0.3)
        async def body() -> None:
            async with serving(echo_factory()) as port:
                port._port.stopReading()  # accepts no connection
                async with connected_many(port, client_factory(), 3):
                    pass

        error = await fails(body)
        assert error.waiting is not None
        self.assertEqual(
            error.waiting.awaiting,
            "connected_many() entering, waiting until the server sides of "
            "3 connection(s) ran connectionMade",
        )


class IgnoredTests(TestCase):
    async def test_swallowed_once_is_cancelled_again(self) -> None:
        """A body that catches CancelledError and waits again is cancelled again."""

        @deadline(0.2, grace=0.3)
        async def body() -> None:
            with contextlib.suppress(defer.CancelledError):
                await defer.Deferred()
            await defer.Deferred()  # stuck: after swallowing

        started = time.monotonic()
        error = await fails(body)
        self.assertLess(time.monotonic() - started, 0.2 + 0.3 + 2)
        assert error.ignored is not None
        self.assertEqual(error.ignored.lineno, line_of("# stuck: after swallowing"))
        self.assertFalse(error.abandoned)
        self.assertIn("so it was cancelled again after grace=0.3s", str(error))
        self.assertEqual(ours(), [])

    async def test_swallowing_forever_is_abandoned(self) -> None:
        """A body that never ends is abandoned after two grace periods."""
        cancelled: list[None] = []

        @deadline(0.2, grace=0.2)
        async def body() -> None:
            while True:
                try:
                    await defer.Deferred()
                except defer.CancelledError:
                    cancelled.append(None)

        started = time.monotonic()
        error = await fails(body)
        self.assertLess(time.monotonic() - started, 0.2 + 2 * 0.2 + 2)
        self.assertTrue(error.abandoned)
        self.assertEqual(len(cancelled), 2)
        self.assertIn("it was abandoned there", str(error))
        self.assertEqual(ours(), [])

    async def test_abandoned_body_that_ends_later_is_ignored(self) -> None:
        """An abandoned body that ends afterwards raises and logs nothing."""
        release: defer.Deferred[None] = defer.Deferred()
        ended: list[None] = []

        @deadline(0.2, grace=0.2)
        async def body() -> None:
            for _ in range(2):  # swallows both cancellations
                with contextlib.suppress(defer.CancelledError):
                    await defer.Deferred()
            await release
            ended.append(None)

        error = await fails(body)
        self.assertTrue(error.abandoned)
        release.callback(None)  # the body ends, after it was abandoned
        self.assertEqual(ended, [None])
        # Its result went nowhere: no AlreadyCalledError in what resumed it.
        self.assertIsNone(self.successResultOf(release))

    async def test_returning_after_the_cancel_still_fails(self) -> None:
        """A body that swallows the cancellation and returns still failed."""

        @deadline(0.2)
        async def body() -> str:
            with contextlib.suppress(defer.CancelledError):
                await defer.Deferred()
            return "too late"

        error = await fails(body)
        self.assertIsNone(error.ignored)
        self.assertFalse(error.abandoned)


class NestedTests(TestCase):
    async def test_inner_fires_first(self) -> None:
        """A shorter inner deadline fires; the error names the inner function."""

        @deadline(0.2)
        async def inner() -> None:
            await defer.Deferred()

        @deadline(5)
        async def outer() -> None:
            await inner()

        error = await fails(outer)
        self.assertEqual(error.seconds, 0.2)
        self.assertTrue(error.function.endswith("inner"))
        self.assertTrue(str(error).startswith(f"{error.function}() did not"))

    async def test_outer_fires_first(self) -> None:
        """A shorter outer deadline fires; it names the outer, and the inner line."""

        @deadline(5)
        async def inner() -> None:
            await defer.Deferred()  # stuck: nested

        @deadline(0.2)
        async def outer() -> None:
            await inner()

        error = await fails(outer)
        self.assertEqual(error.seconds, 0.2)
        self.assertTrue(error.function.endswith("outer"))
        assert error.waiting is not None
        self.assertEqual(error.waiting.lineno, line_of("# stuck: nested"))
        self.assertEqual(ours(), [])


class MessageTests(SynchronousTestCase):
    def test_message_from_attributes(self) -> None:
        """The message is composed from the attributes."""
        where = WaitingAt("t.py", 7, "test_x", "await d", "<Deferred at 0x1>")
        error = DeadlineExceeded("T.test_x", 2.0, where, 2.0)
        self.assertEqual(
            str(error).splitlines()[:4],
            [
                "T.test_x() did not finish within deadline=2.0s.",
                "It was waiting in test_x() at t.py, line 7:",
                "    await d",
                "  awaiting <Deferred at 0x1>",
            ],
        )

    def test_message_without_a_place(self) -> None:
        """A function stuck where cleanconn could not see says so."""
        error = DeadlineExceeded("T.test_x", 2.0, None, 2.0)
        self.assertIn(
            "It was not waiting on anything cleanconn could find.", str(error)
        )


def run_case(case: type[Any], **attributes: Any) -> tuple[TestResult, float]:
    """Run ``case.test`` to completion; the result and how long it took."""
    test = case("test")
    for name, value in attributes.items():
        setattr(test, name, value)
    result = TestResult()
    started = time.monotonic()
    test.run(result)
    return result, time.monotonic() - started


CASES = os.path.join(os.path.dirname(HERE), "_deadline_cases.py")


class TestCaseTests(SynchronousTestCase):
    def error_of(self, result: TestResult) -> BaseException:
        """The one error of ``result`` (so nothing was left on the reactor)."""
        self.assertEqual(result.failures, [])
        [(_, failure)] = result.errors
        error = getattr(failure, "value", None)
        assert isinstance(error, BaseException)
        return error

    def test_class_timeout_unwinds(self) -> None:
        """A class-level timeout cancels the test and unwinds its scopes."""
        seen: dict[str, Any] = {}
        result, took = run_case(_deadline_cases.ClassTimeout, seen=seen)
        error = self.error_of(result)
        self.assertIsInstance(error, DeadlineExceeded)
        assert isinstance(error, DeadlineExceeded)
        self.assertEqual(error.seconds, 0.5)
        self.assertEqual(error.function, "ClassTimeout.test")
        assert error.waiting is not None
        self.assertEqual(error.waiting.lineno, line_of("# stuck: class timeout", CASES))
        self.assertEqual(seen["client"].lost_count, 1)
        self.assertEqual(seen["server"].lost_count, 1)
        self.assertLess(took, 0.5 + 5 + 2)

    def test_method_timeout(self) -> None:
        """A method's timeout attribute is the deadline."""
        result, took = run_case(_deadline_cases.MethodTimeout)
        error = self.error_of(result)
        assert isinstance(error, DeadlineExceeded)
        self.assertEqual(error.seconds, 0.3)
        self.assertLess(took, 5)

    def test_default_timeout(self) -> None:
        """With no timeout attribute, trial's default is the deadline."""
        self.patch(util, "DEFAULT_TIMEOUT_DURATION", 0.3)
        result, _ = run_case(_deadline_cases.DefaultTimeout)
        error = self.error_of(result)
        assert isinstance(error, DeadlineExceeded)
        self.assertEqual(error.seconds, 0.3)

    def test_async_setup(self) -> None:
        """A stuck async setUp is cancelled too, and the test does not run."""
        ran: list[str] = []
        result, _ = run_case(_deadline_cases.StuckSetUp, ran=ran)
        error = self.error_of(result)
        assert isinstance(error, DeadlineExceeded)
        self.assertEqual(error.function, "StuckSetUp.setUp")
        self.assertEqual(ran, [])

    def test_passing_async_test(self) -> None:
        """An async test that ends in time passes, leaving nothing behind."""
        result, _ = run_case(_deadline_cases.Passing)
        self.assertTrue(result.wasSuccessful(), result.errors)
        self.assertEqual(result.successes, 1)

    def test_sync_test_as_in_trial(self) -> None:
        """A synchronous test runs unwrapped, with trial's own timeout."""
        seen: dict[str, Any] = {}
        result, _ = run_case(_deadline_cases.Synchronous, seen=seen)
        self.assertTrue(result.wasSuccessful(), result.errors)
        self.assertEqual(seen["timeout"], 7.0)
        self.assertEqual(seen["method"].__func__, _deadline_cases.Synchronous.test)

    def test_deferred_test_as_in_trial(self) -> None:
        """A test returning a Deferred gets trial's own TimeoutError."""
        result, _ = run_case(_deadline_cases.ReturnsDeferred)
        error = self.error_of(result)
        self.assertIsInstance(error, defer.TimeoutError)
        self.assertNotIsInstance(error, DeadlineExceeded)
        self.assertIn("still running at 0.3 secs", str(error))


SCRIPT = """
from twisted.internet import defer, task
from cleanconn import deadline

@deadline(0.3)
async def main(reactor):
    await defer.Deferred()  # stuck: react

task.react(lambda reactor: defer.ensureDeferred(main(reactor)))
"""


class ReactTests(SynchronousTestCase):
    def test_react_entry_point(self) -> None:
        """A task.react() entry point exits non-zero, naming the stuck line."""
        script = self.mktemp() + ".py"
        with open(script, "w") as f:
            f.write(textwrap.dedent(SCRIPT))
        env = {**os.environ, "PYTHONPATH": ROOT}
        done = subprocess.run(
            [sys.executable, script],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        self.assertEqual(done.returncode, 1, done.stderr)
        self.assertIn("main() did not finish within deadline=0.3s", done.stderr)
        self.assertIn(
            "line 7:\n    await defer.Deferred()  # stuck: react", done.stderr
        )
