"""clean_reactor(): it catches each kind of leak, and only leaks."""

from __future__ import annotations

import os
import re
import signal
import socket
import sys
import textwrap
from pathlib import Path
from typing import Any

import treq
from treq.api import get_global_pool
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.error import ConnectionAborted, ConnectionRefusedError, UserError
from twisted.internet.interfaces import (
    IConnector,
    IListeningPort,
    IProcessTransport,
    IReadDescriptor,
)
from twisted.internet.protocol import ClientFactory, ProcessProtocol, ServerFactory
from twisted.internet.task import Clock, LoopingCall
from twisted.internet.testing import MemoryReactorClock
from twisted.internet.utils import getProcessOutputAndValue
from twisted.protocols.policies import WrappingFactory
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import Site
from zope.interface import implementer

import cleanconn
from cleanconn import (
    DirtyReactorError,
    base_url,
    clean_reactor,
    connected,
    serving,
    spawned,
)
from cleanconn._teardown import ABORT_GRACE

from ._helpers import Recorder, TestCase, client_factory, echo_factory, turn

ROOT = Path(cleanconn.__file__).resolve().parent.parent


class Accepted(Recorder):
    """A server protocol that announces itself on its factory."""

    factory: AcceptingFactory

    def connectionMade(self) -> None:
        super().connectionMade()
        self.factory.accepted.callback(self)


class AcceptingFactory(ServerFactory):
    """Fires ``accepted`` with the first server protocol it builds."""

    protocol = Accepted  # type: ignore[assignment]

    def __init__(self) -> None:
        self.accepted: defer.Deferred[Accepted] = defer.Deferred()


def _open(selectable: Any) -> bool:
    return not getattr(selectable, "disconnected", False) and selectable.fileno() != -1


class JanitorTestCase(TestCase):
    """Helpers that make each leak test close its own leak whatever happens."""

    def leaves(self, *selectables: Any) -> None:
        """Close ``selectables`` after the test if they are still open."""

        async def close() -> None:
            for s in selectables:
                if not _open(s):
                    continue
                if IListeningPort.providedBy(s):
                    if not getattr(s, "disconnecting", False):
                        await defer.maybeDeferred(s.stopListening)
                else:
                    s.abortConnection()
            # An abort completes on the reactor's next turn.
            while any(_open(s) for s in selectables):
                await turn()

        self.addCleanup(lambda: defer.ensureDeferred(close()))

    async def left_call(self, func: Any) -> tuple[Any, DirtyReactorError]:
        """A block that leaves a DelayedCall of ``func``: the call, and the
        DirtyReactorError that reported it."""
        with self.assertRaises(DirtyReactorError) as caught:
            async with clean_reactor():
                call = reactor.callLater(1000, func)
                self.leaves_call(call)
        return call, caught.exception

    def leaves_call(self, call: Any) -> None:
        """Cancel ``call`` after the test if it is still pending."""
        self.addCleanup(lambda: call.cancel() if call.active() else None)

    async def listen(self) -> tuple[Any, AcceptingFactory]:
        """A raw Twisted listening port on loopback, closed after the test."""
        factory = AcceptingFactory()
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.leaves(port)
        return port, factory

    async def connect(self, port: Any) -> tuple[Recorder, Accepted]:
        """A raw client connection to ``port``, and its server protocol."""
        factory = port.factory
        address = port.getHost()
        endpoint = TCP4ClientEndpoint(reactor, address.host, address.port)
        client: Recorder = await endpoint.connect(client_factory())  # type: ignore[assignment]
        server = await factory.accepted
        self.leaves(client.transport, server.transport)
        return client, server


class CleanBodyTests(JanitorTestCase):
    async def test_clean_echo_raises_nothing(self) -> None:
        """A serving()/connected() echo inside the block leaves nothing to report."""
        async with clean_reactor():
            async with serving(echo_factory()) as port:
                async with connected(port, client_factory()) as proto:
                    proto.transport.write(b"ping")
                    self.assertEqual(await proto.received(4), b"ping")

    async def test_waker_not_reported(self) -> None:
        """The reactor's waker, registered inside the block, is not reported."""
        waker = getattr(reactor, "waker", None)
        if waker is None or waker not in reactor.getReaders():
            raise self.skipTest("this reactor has no waker among its readers")
        reactor.removeReader(waker)
        try:
            async with clean_reactor():
                reactor.addReader(waker)
        finally:
            reactor.addReader(waker)

    async def test_existing_port_and_call_not_reported(self) -> None:
        """A port and a DelayedCall made before the block are not reported."""
        port, _ = await self.listen()
        call = reactor.callLater(1000, lambda: None)
        self.leaves_call(call)
        async with clean_reactor():
            pass
        self.assertTrue(_open(port))
        self.assertTrue(call.active())

    async def test_existing_paused_connection_not_reported(self) -> None:
        """An inner scope does not report a paused connection of an outer one."""
        port, _ = await self.listen()
        inner_was_clean = False
        with self.assertRaises(DirtyReactorError) as caught:
            async with clean_reactor():
                client, _ = await self.connect(port)
                client.transport.pauseProducing()
                async with clean_reactor():
                    pass
                inner_was_clean = True
        self.assertTrue(inner_was_clean)
        self.assertIn(client.transport, caught.exception.paused)

    async def test_trial_timeout_call_not_reported(self) -> None:
        """trial's timeout call, made after the test started, is not reported."""
        async with clean_reactor():
            await turn()  # trial schedules its timeout call for the test first
            calls = reactor.getDelayedCalls()
            self.assertTrue(
                any(getattr(c.func, "__name__", "") == "onTimeout" for c in calls)
            )

    async def test_reactor_argument(self) -> None:
        """The reactor= given is the one checked (a memory clock: no I/O needed)."""
        clock = MemoryReactorClock()
        with self.assertRaises(DirtyReactorError) as caught:
            async with clean_reactor(reactor=clock):  # type: ignore[arg-type]
                call = clock.callLater(5, lambda: None)
        self.assertEqual(caught.exception.delayed_calls, (call,))

    async def test_single_use(self) -> None:
        """Entering one clean_reactor() twice is refused."""
        scope = clean_reactor()
        async with scope:
            pass
        with self.assertRaises(RuntimeError):
            async with scope:
                pass

    async def test_reactor_restored_after_exit(self) -> None:
        """After the last scope, the reactor's removeReader/removeWriter are its own."""
        before = {
            name: vars(reactor).get(name) for name in ("removeReader", "removeWriter")
        }
        async with clean_reactor():
            async with clean_reactor():
                pass
        after = {
            name: vars(reactor).get(name) for name in ("removeReader", "removeWriter")
        }
        self.assertEqual(after, before)


class LeakTests(JanitorTestCase):
    async def test_listening_port(self) -> None:
        """A listening port left open is reported, with its address."""
        with self.assertRaises(DirtyReactorError) as caught:
            async with clean_reactor():
                port, _ = await self.listen()
                address = port.getHost()
        self.assertEqual(caught.exception.selectables, (port,))
        self.assertIn(
            f"listening port on 127.0.0.1:{address.port}", str(caught.exception)
        )

    async def test_port_stop_not_awaited(self) -> None:
        """A stopListening() not waited for is reported (trial would iterate)."""
        with self.assertRaises(DirtyReactorError) as caught:
            async with clean_reactor():
                port, _ = await self.listen()
                port.stopListening()
        self.assertEqual(caught.exception.selectables, (port,))

    async def test_client_connection(self) -> None:
        """A client connection left open is reported, with its protocol."""
        port, _ = await self.listen()
        with self.assertRaises(DirtyReactorError) as caught:
            async with clean_reactor():
                client, _ = await self.connect(port)
        self.assertIn(client.transport, caught.exception.selectables)
        self.assertIn("(protocol Recorder)", str(caught.exception))

    async def test_server_connection(self) -> None:
        """A server connection left open is reported, with its protocol."""
        with self.assertRaises(DirtyReactorError) as caught:
            async with clean_reactor():
                port, _ = await self.listen()
                _, server = await self.connect(port)
        self.assertIn(server.transport, caught.exception.selectables)
        self.assertIn("(protocol Accepted)", str(caught.exception))

    async def test_paused_connection(self) -> None:
        """A connection that paused reading, invisible in getReaders(), is reported."""
        port, _ = await self.listen()
        with self.assertRaises(DirtyReactorError) as caught:
            async with clean_reactor():
                client, _ = await self.connect(port)
                client.transport.pauseProducing()
                self.assertNotIn(client.transport, reactor.getReaders())
                self.assertNotIn(client.transport, reactor.getWriters())
        self.assertIn(client.transport, caught.exception.selectables)
        self.assertIn(client.transport, caught.exception.paused)
        self.assertIn("paused", str(caught.exception))

    async def forgotten_call(self) -> tuple[Any, Any, DirtyReactorError]:
        """A DelayedCall of a plain function ``forgotten`` that a block left,
        the function, and the error that reported the call."""

        def forgotten() -> None:
            pass

        call, error = await self.left_call(forgotten)
        return call, forgotten, error

    async def test_delayed_call(self) -> None:
        """A pending DelayedCall is reported, with its function."""
        call, _, error = await self.forgotten_call()
        self.assertEqual(error.delayed_calls, (call,))
        self.assertIn("forgotten", str(error))

    async def test_plain_call_described_by_itself(self) -> None:
        """A leftover call of a plain function is described as the call alone."""
        call, forgotten, error = await self.forgotten_call()
        self.assertRegex(
            str(error),
            rf"\n  - delayed call <DelayedCall 0x{id(call):x} \[[0-9.]+s\] "
            rf"called=0 cancelled=0 {re.escape(forgotten.__qualname__)}\(\)>\n",
        )


class CleanupTests(JanitorTestCase):
    async def test_leaked_port_is_stopped(self) -> None:
        """After the report, the leaked port no longer accepts connections."""
        with self.assertRaises(DirtyReactorError):
            async with clean_reactor():
                port, _ = await self.listen()
                address = port.getHost()
        endpoint = TCP4ClientEndpoint(reactor, address.host, address.port)
        with self.assertRaises(ConnectionRefusedError):
            await endpoint.connect(client_factory())

    async def test_leaked_connections_are_closed(self) -> None:
        """After the report, both ends of a leaked connection ran connectionLost."""
        with self.assertRaises(DirtyReactorError) as caught:
            async with clean_reactor():
                port, _ = await self.listen()
                client, server = await self.connect(port)
        self.assertEqual((client.lost_count, server.lost_count), (1, 1))
        self.assertEqual(caught.exception.unclosed, ())

    async def test_paused_connection_is_closed(self) -> None:
        """After the report, a leaked paused connection has run connectionLost."""
        port, _ = await self.listen()
        with self.assertRaises(DirtyReactorError):
            async with clean_reactor():
                client, _ = await self.connect(port)
                client.transport.pauseProducing()
        self.assertEqual(client.lost_count, 1)

    async def test_leaked_call_is_cancelled(self) -> None:
        """After the report, the leaked DelayedCall is no longer pending."""
        with self.assertRaises(DirtyReactorError):
            async with clean_reactor():
                call = reactor.callLater(1000, lambda: None)
                self.leaves_call(call)
        self.assertFalse(call.active())


class Child(ProcessProtocol):
    """A child process protocol; ``ended`` fires when processEnded ran."""

    reason: Failure | None = None

    def __init__(self) -> None:
        self.ended: defer.Deferred[None] = defer.Deferred()

    def processEnded(self, reason: Failure) -> None:
        self.reason = reason
        self.ended.callback(None)


#: A child that waits, doing nothing, until a signal ends it.
_WAIT_FOR_SIGNAL = "import signal; signal.pause()"


class ProcessTests(JanitorTestCase):
    def spawn(self) -> tuple[Child, int]:
        """A child process that runs until killed; killed after the test anyway."""
        child = Child()
        transport = reactor.spawnProcess(
            child, sys.executable, [sys.executable, "-c", _WAIT_FOR_SIGNAL], env=None
        )
        pid = transport.pid

        async def kill() -> None:
            if not child.ended.called:
                transport.signalProcess("KILL")
            await child.ended

        self.addCleanup(lambda: defer.ensureDeferred(kill()))
        return child, pid

    async def test_child_process_reported(self) -> None:
        """A child process left running is reported, by its pipes and pid."""
        with self.assertRaises(DirtyReactorError) as caught:
            async with clean_reactor():
                _, pid = self.spawn()
        self.assertIn(f"pipe of child process {pid}", str(caught.exception))

    async def test_child_process_killed(self) -> None:
        """After the report, a leaked child process has been killed."""
        with self.assertRaises(DirtyReactorError):
            async with clean_reactor():
                child, _ = self.spawn()
        await child.ended
        assert child.reason is not None
        self.assertEqual(child.reason.value.signal, signal.SIGKILL)

    # Without the kill the child never ends: fail in 10 s, not trial's 120 s.
    test_child_process_killed.timeout = 10

    def spawn_without_pipes(self) -> tuple[Child, int]:
        """A child with no pipes (so no selectable): only its pid shows it."""
        child = Child()
        transport = reactor.spawnProcess(
            child,
            sys.executable,
            [sys.executable, "-c", _WAIT_FOR_SIGNAL],
            env=None,
            childFDs={},
        )

        async def kill() -> None:
            if not child.ended.called:
                transport.signalProcess("KILL")
            await child.ended

        self.addCleanup(lambda: defer.ensureDeferred(kill()))
        return child, transport.pid

    async def test_unreaped_child_without_pipes_reported(self) -> None:
        """A child process with no pipes, never waited for, is reported by pid."""
        with self.assertRaises(DirtyReactorError) as caught:
            async with clean_reactor():
                _, pid = self.spawn_without_pipes()
        self.assertEqual(caught.exception.processes, (pid,))
        self.assertIn(f"child process {pid} (protocol Child)", str(caught.exception))
        self.assertIn("All of it has been closed", str(caught.exception))

    async def test_unreaped_child_killed_and_reaped(self) -> None:
        """The report's cleanup kills an unreaped child and waits until it is reaped."""
        with self.assertRaises(DirtyReactorError):
            async with clean_reactor():
                child, pid = self.spawn_without_pipes()
        self.assertTrue(child.ended.called)
        with self.assertRaises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)

    test_unreaped_child_killed_and_reaped.timeout = 10

    async def test_older_child_not_reported(self) -> None:
        """A child process started before the block is not the block's."""
        child, _ = self.spawn_without_pipes()
        async with clean_reactor():
            pass
        self.assertFalse(child.ended.called)


#: A child that closes stdin, stdout and stderr once told to (a line on its
#: stdin), then waits, doing nothing, until a signal ends it.
_CLOSE_PIPES_ON_CUE = (
    "import os, signal, sys; sys.stdin.readline(); "
    "[os.close(fd) for fd in (0, 1, 2)]; signal.pause()"
)


class OlderChildTests(JanitorTestCase):
    async def without_sigchld_handler(self) -> None:
        """
        Take the reactor's SIGCHLD handler away until the test ends, as a
        reactor run with ``installSignalHandlers=False`` has none: spawned()
        then sets a timer to try again to reap a child whose pipes closed.
        Fault injection: trial's reactor has one while it runs.
        """
        await turn()  # trial runs the reactor, installing it, at the first wait
        previous = signal.getsignal(signal.SIGCHLD)
        assert previous is not None

        def restore() -> None:
            signal.signal(signal.SIGCHLD, previous)
            signal.siginterrupt(signal.SIGCHLD, False)  # as Twisted set it

        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        self.addCleanup(restore)

    async def test_older_childs_reap_timer_not_reported(self) -> None:
        """The timer that tries again to reap a spawned() child started
        before the block, whose pipes closed in it, is not the block's."""
        async with spawned([sys.executable, "-c", _CLOSE_PIPES_ON_CUE]) as child:
            await self.without_sigchld_handler()
            async with clean_reactor():
                child.stdin.write(b"close\n")
                self.assertEqual(await child.stdout.read(), b"")
                self.assertEqual(await child.stderr.read(), b"")
                while not child.stdin.closed:
                    await turn()
                await turn()  # the last pipe's close, which may have resumed us, ends
                self.assertIsNone(child.returncode)
                self.assertIn(
                    "ChildProcess._reap",
                    [
                        getattr(c.func, "__qualname__", "")
                        for c in reactor.getDelayedCalls()
                    ],
                )

    test_older_childs_reap_timer_not_reported.timeout = 10

    async def test_users_own_reap_function_reported(self) -> None:
        """A leftover call of the user's own function named like spawned()'s
        reap timer is reported like any other."""

        def _reap() -> None:
            pass

        call, error = await self.left_call(_reap)
        self.assertEqual(error.delayed_calls, (call,))


class PTYProcessTests(JanitorTestCase):
    async def test_pty_child_reported_and_killed(self) -> None:
        """A child process on a PTY (itself the selectable) left running is
        reported by its pid, killed, and its PTY closed."""
        child = Child()
        with self.assertRaises(DirtyReactorError) as caught:
            async with clean_reactor():
                transport = reactor.spawnProcess(
                    child,
                    sys.executable,
                    [sys.executable, "-c", _WAIT_FOR_SIGNAL],
                    env=None,
                    usePTY=True,
                )
                pid = transport.pid
        self.assertIn(transport, caught.exception.selectables)
        self.assertIn(f"child process {pid}", str(caught.exception))
        await child.ended
        assert child.reason is not None
        self.assertEqual(child.reason.value.signal, signal.SIGKILL)

    test_pty_child_reported_and_killed.timeout = 10


class BodyErrorTests(JanitorTestCase):
    async def test_body_exception_wins(self) -> None:
        """If the body raised, its exception propagates, the report attached to it."""
        with self.assertRaises(ZeroDivisionError) as caught:
            async with clean_reactor():
                call = reactor.callLater(1000, lambda: None)
                self.leaves_call(call)
                1 / 0  # noqa: B018
        (report,) = caught.exception.cleanconn_cleanup_errors
        self.assertIsInstance(report, DirtyReactorError)
        self.assertEqual(report.delayed_calls, (call,))

    async def test_body_exception_still_cleans_up(self) -> None:
        """If the body raised, the leak is still cleaned up."""
        with self.assertRaises(ZeroDivisionError):
            async with clean_reactor():
                call = reactor.callLater(1000, lambda: None)
                self.leaves_call(call)
                1 / 0  # noqa: B018
        self.assertFalse(call.active())


_SCRIPT = """
import sys
from twisted.internet import defer, task
from twisted.internet.protocol import Factory, Protocol
from cleanconn import DirtyReactorError, clean_reactor, connected, serving


async def main(reactor, leak):
    async with clean_reactor():
        async with serving(Factory.forProtocol(Protocol)) as port:
            async with connected(port, Factory.forProtocol(Protocol)):
                pass
        if leak:
            reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
    print("clean")


task.react(lambda reactor: defer.ensureDeferred(main(reactor, sys.argv[1] == "leak")))
"""


class ReactScriptTests(TestCase):
    async def run_script(self, argument: str) -> tuple[bytes, bytes, int]:
        script = Path(self.mktemp())
        script.write_text(textwrap.dedent(_SCRIPT))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p
        )
        result: tuple[bytes, bytes, int] = await getProcessOutputAndValue(
            sys.executable, [str(script), argument], env=env
        )
        return result

    async def test_clean_script(self) -> None:
        """In a task.react script, a clean block lets the script finish normally."""
        out, err, code = await self.run_script("clean")
        self.assertEqual((out, code), (b"clean\n", 0), err)

    async def test_leaking_script(self) -> None:
        """In a task.react script, a leak fails the script with DirtyReactorError."""
        out, err, code = await self.run_script("leak")
        self.assertEqual((out, code), (b"", 1))
        self.assertIn(b"DirtyReactorError", err)
        self.assertIn(b"listening port on 127.0.0.1:", err)


class Ticker:
    """
    A LoopingCall whose ``ticks(n)`` fires once it has ticked n more times
    (on the reactor's next turn: after the LoopingCall has re-armed).
    """

    def __init__(self) -> None:
        self.count = 0
        self._waiters: list[tuple[int, defer.Deferred[None]]] = []
        self.loop = LoopingCall(self.tick)

    def tick(self) -> None:
        self.count += 1
        due = [w for w in self._waiters if w[0] <= self.count]
        for waiter in due:
            self._waiters.remove(waiter)
            reactor.callLater(0, waiter[1].callback, None)

    def ticks(self, more: int) -> defer.Deferred[None]:
        waiter: defer.Deferred[None] = defer.Deferred()
        self._waiters.append((self.count + more, waiter))
        return waiter


class Poked:
    """A timer's target: ``poked(n)`` fires once ``poke`` has run n times."""

    def __init__(self) -> None:
        self.count = 0
        self._waiters: list[tuple[int, defer.Deferred[None]]] = []

    def poke(self) -> None:
        self.count += 1
        due = [w for w in self._waiters if w[0] <= self.count]
        for waiter in due:
            self._waiters.remove(waiter)
            waiter[1].callback(None)

    def poked(self, count: int) -> defer.Deferred[None]:
        if self.count >= count:
            return defer.succeed(None)
        waiter: defer.Deferred[None] = defer.Deferred()
        self._waiters.append((count, waiter))
        return waiter


class OlderTimerTests(JanitorTestCase):
    def ticker(self) -> Ticker:
        """A LoopingCall ticking every 10 ms, stopped after the test."""
        ticker = Ticker()
        ticker.loop.start(0.01, now=False)

        def stop() -> None:
            if ticker.loop.running:
                ticker.loop.stop()

        self.addCleanup(stop)
        return ticker

    async def test_rearmed_looping_call_not_reported(self) -> None:
        """A LoopingCall started before the block and re-armed in it is no leak."""
        ticker = self.ticker()
        async with clean_reactor():
            await ticker.ticks(3)

    async def test_function_scheduled_again_is_reported(self) -> None:
        """A plain function that had a call before the block, which fired,
        and is scheduled again inside the block, is reported: a leak."""
        fired: defer.Deferred[None] = defer.Deferred()

        def ping() -> None:
            if not fired.called:
                fired.callback(None)

        reactor.callLater(0.01, ping)
        with self.assertRaises(DirtyReactorError) as caught:
            async with clean_reactor():
                await fired
                reactor.callLater(100, ping)
        self.assertEqual(len(caught.exception.delayed_calls), 1)

    async def test_rearmed_looping_call_not_cancelled(self) -> None:
        """Cleaning up a dirty block leaves an older LoopingCall ticking."""
        ticker = self.ticker()
        with self.assertRaises(DirtyReactorError) as caught:
            async with clean_reactor():
                await ticker.ticks(3)
                leaked = reactor.callLater(1000, lambda: None)
                self.leaves_call(leaked)
        self.assertEqual(caught.exception.delayed_calls, (leaked,))
        await ticker.ticks(2)  # still ticking: its call was not cancelled
        ticker.loop.stop()  # and stops without AlreadyCancelled

    async def test_new_looping_call_reported(self) -> None:
        """A LoopingCall started inside the block is reported, older ones aside."""
        ticker = self.ticker()
        with self.assertRaises(DirtyReactorError) as caught:
            async with clean_reactor():
                new = self.ticker()
                await defer.gatherResults([ticker.ticks(2), new.ticks(2)])
        self.assertEqual(len(caught.exception.delayed_calls), 1)
        self.assertIn("Ticker.tick", str(caught.exception))
        self.assertFalse(new.loop.running)  # stopped, not just its call cancelled
        self.assertTrue(ticker.loop.running)

    async def test_call_beside_a_pending_one_reported(self) -> None:
        """A new call to a method whose older call is still pending re-arms
        nothing: it is reported."""
        target = Poked()
        older = reactor.callLater(1000, target.poke)
        self.leaves_call(older)
        with self.assertRaises(DirtyReactorError) as caught:
            async with clean_reactor():
                new = reactor.callLater(1000, target.poke)
                self.leaves_call(new)
        self.assertEqual(caught.exception.delayed_calls, (new,))
        self.assertTrue(older.active())

    async def test_rearmed_timer_matched_once(self) -> None:
        """An older timer that ran re-arms once: a second new call to the same
        method in the block is reported."""
        target = Poked()
        reactor.callLater(0, target.poke)
        with self.assertRaises(DirtyReactorError) as caught:
            async with clean_reactor():
                await target.poked(1)
                rearmed = reactor.callLater(1000, target.poke)
                self.leaves_call(rearmed)
                extra = reactor.callLater(1000, target.poke)
                self.leaves_call(extra)
        self.assertEqual(len(caught.exception.delayed_calls), 1)
        self.assertIn(caught.exception.delayed_calls[0], (rearmed, extra))

    async def test_two_rearmed_timers_not_reported(self) -> None:
        """Two older timers of one method, each re-armed in the block, are
        not reported."""
        target = Poked()
        reactor.callLater(0, target.poke)
        reactor.callLater(0, target.poke)
        async with clean_reactor():
            await target.poked(2)
            for _ in range(2):
                self.leaves_call(reactor.callLater(1000, target.poke))

    async def test_looping_call_started_at_entry_time_reported(self) -> None:
        """A LoopingCall started in the block at the very time the block
        started (as a coarse clock gives) is reported, and stopped."""
        # A memory clock makes the two times equal for certain; on Linux the
        # real clock always moves between them.
        clock = MemoryReactorClock()
        loop = LoopingCall(lambda: None)
        loop.clock = clock
        with self.assertRaises(DirtyReactorError) as caught:
            async with clean_reactor(reactor=clock):  # type: ignore[arg-type]
                loop.start(1, now=False)
                call = loop.call
        self.assertEqual(caught.exception.delayed_calls, (call,))
        self.assertFalse(loop.running)

    async def test_outer_site_log_timer_not_reported(self) -> None:
        """The log-date timer of a Site an outer serving() serves re-arms, unseen."""
        site = Site(Resource())
        async with serving(site):
            timer = site._logDateTimeCall
            assert timer is not None
            async with clean_reactor():
                timer.reset(0)  # the one-second tick, now
                while site._logDateTimeCall is timer:
                    await turn()
            rearmed = site._logDateTimeCall
            assert rearmed is not None
            self.assertTrue(rearmed.active())


class OuterConnectionTests(JanitorTestCase):
    async def test_connection_resumed_in_block_not_reported(self) -> None:
        """A connection paused before the block and resumed in it is not reported."""
        port, _ = await self.listen()
        client, _ = await self.connect(port)
        client.transport.pauseProducing()
        async with clean_reactor():
            client.transport.resumeProducing()
        self.assertTrue(_open(client.transport))

    async def test_connection_resumed_in_block_not_closed(self) -> None:
        """Cleaning up a dirty block leaves an older, resumed connection open."""
        port, _ = await self.listen()
        client, _ = await self.connect(port)
        client.transport.pauseProducing()
        with self.assertRaises(DirtyReactorError):
            async with clean_reactor():
                client.transport.resumeProducing()
                self.leaves_call(reactor.callLater(1000, lambda: None))
        self.assertTrue(_open(client.transport))
        self.assertEqual(client.lost_count, 0)

    async def test_server_side_of_outer_serving_not_reported(self) -> None:
        """The server side of connected("tcp:...") to an outer serving() is its own."""
        server_factory = echo_factory()
        async with serving(server_factory) as port:
            target = f"tcp:127.0.0.1:{port.getHost().port}"
            async with clean_reactor():
                async with connected(target, client_factory()) as proto:
                    proto.transport.write(b"ping")
                    await proto.received(4)
        (server,) = server_factory.built
        assert server.reason is not None
        self.assertFalse(server.reason.check(ConnectionAborted))


class Refused(ClientFactory):
    """Records why its connect failed."""

    protocol = Recorder
    reason: Failure | None = None

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        self.reason = reason


class Ending(ClientFactory):
    """``lost`` fires once its connection has ended (its connector told)."""

    protocol = Recorder

    def __init__(self) -> None:
        self.lost: defer.Deferred[None] = defer.Deferred()

    def clientConnectionLost(self, connector: Any, reason: Failure) -> None:
        self.lost.callback(None)


class ConnectInProgressTests(JanitorTestCase):
    async def test_connect_in_progress_reported(self) -> None:
        """A connectTCP() never waited for is reported as a connect in progress."""
        port, _ = await self.listen()
        address = port.getHost()
        with self.assertRaises(DirtyReactorError) as caught:
            async with clean_reactor():
                connector = reactor.connectTCP(address.host, address.port, Refused())
        self.assertEqual(caught.exception.connecting, (connector,))
        self.assertIn(
            f"connect still in progress to 127.0.0.1:{address.port}",
            str(caught.exception),
        )

    async def test_connect_in_progress_described(self) -> None:
        """A connect in progress is described word for word: destination,
        the user's factory, and the connector."""
        port, _ = await self.listen()
        address = port.getHost()
        with self.assertRaises(DirtyReactorError) as caught:
            async with clean_reactor():
                connector = reactor.connectTCP(address.host, address.port, Refused())
        self.assertIn(
            f"  - connect still in progress to 127.0.0.1:{address.port} "
            "(factory Refused), never waited for: "
            f"<twisted.internet.tcp.Connector at 0x{id(connector):x}>",
            str(caught.exception).splitlines(),
        )

    async def test_reconnect_scheduled_is_a_call(self) -> None:
        """A reconnect scheduled for a connector whose connection ended is
        reported as a DelayedCall, not as a connect in progress."""
        port, factory = await self.listen()
        address = port.getHost()
        clients = Ending()
        connector = reactor.connectTCP(address.host, address.port, clients)
        server = await factory.accepted
        server.transport.loseConnection()
        await defer.gatherResults([clients.lost, server.lost])
        self.assertEqual(connector.state, "disconnected")
        call, error = await self.left_call(connector.connect)
        self.assertEqual((error.delayed_calls, error.connecting), ((call,), ()))

    async def test_call_of_unconnected_protocol_reported(self) -> None:
        """A leftover call to a method of a protocol that is not connected is
        reported as a DelayedCall."""
        protocol = Recorder()
        call, error = await self.left_call(protocol.connectionMade)
        self.assertEqual((error.delayed_calls, error.connecting), ((call,), ()))

    async def test_connect_in_progress_stopped(self) -> None:
        """After the report, the connect is stopped and its socket closed."""
        port, _ = await self.listen()
        address = port.getHost()
        factory = Refused()
        with self.assertRaises(DirtyReactorError):
            async with clean_reactor():
                connector = reactor.connectTCP(address.host, address.port, factory)
                client = connector.transport
        self.assertEqual(connector.state, "disconnected")
        self.assertFalse(_open(client))
        assert factory.reason is not None
        self.assertTrue(factory.reason.check(UserError))

    async def test_connect_in_progress_on_the_reactor(self) -> None:
        """A connect whose socket is on the reactor, not yet connected, is
        reported as a connect in progress and stopped."""
        port, _ = await self.listen()
        address = port.getHost()
        factory = Refused()
        with self.assertRaises(DirtyReactorError) as caught:
            async with clean_reactor():
                connector = reactor.connectTCP(address.host, address.port, factory)
                await turn()  # it resolved and started connecting: on the reactor
                client = connector.transport
                self.assertEqual(connector.state, "connecting")
                local = client.getHost().port
        self.assertIn(client, caught.exception.selectables)
        self.assertIn(
            f"connect still in progress from 127.0.0.1:{local} "
            f"to 127.0.0.1:{address.port}",
            str(caught.exception),
        )
        self.assertEqual(connector.state, "disconnected")
        self.assertFalse(_open(client))


class _Reader:
    """What the janitor calls on a reader, over one end of a socket pair."""

    __slots__ = ("sockets",)

    def __init__(self) -> None:
        self.sockets = socket.socketpair()

    def fileno(self) -> int:
        return self.sockets[0].fileno()

    def doRead(self) -> None:
        pass

    def connectionLost(self, reason: Failure) -> None:
        pass

    def logPrefix(self) -> str:
        return type(self).__name__


@implementer(IReadDescriptor)
class BareReader(_Reader):
    """A reader with no way to close it: no abortConnection, no loseConnection."""


class NeverCloses(BareReader):
    """A reader whose close never completes (a stand-in for a foreign
    selectable that ignores it: Twisted's own always close)."""

    def loseConnection(self) -> None:
        pass


class NeverAborts(BareReader):
    """A reader whose abort never completes (see :class:`NeverCloses`)."""

    def abortConnection(self) -> None:
        pass


class RaisesOnClose(BareReader):
    """A reader whose abort raises (see :class:`NeverCloses`)."""

    def abortConnection(self) -> None:
        raise OSError("no way")


@implementer(IListeningPort)
class NeverStops(BareReader):  # type: ignore[misc]  # what the janitor calls
    """A listening port whose stop never completes (see :class:`NeverCloses`)."""

    def stopListening(self) -> None:
        pass


@implementer(IConnector)
class StuckConnector:  # type: ignore[misc]  # what the janitor calls
    """A connector that stays connecting whatever it is told."""

    state = "connecting"

    def stopConnecting(self) -> None:
        pass


class ConnectsForever(BareReader):
    """A client socket still connecting whose connect never stops (see
    :class:`NeverCloses`)."""

    connected = False

    def __init__(self) -> None:
        super().__init__()
        self.connector = StuckConnector()


@implementer(IProcessTransport)
class UnkillableChild(BareReader):  # type: ignore[misc]  # what the janitor calls
    """A child process on a PTY (itself the selectable) that a SIGKILL does
    not end within the grace period, as one stuck in the kernel: fault
    injection, as a test cannot make such a child. Never signals anything."""

    pid = 99999  # never signalled: signalProcess() does nothing

    def signalProcess(self, signal: object) -> None:
        pass

    def loseConnection(self) -> None:
        pass


@implementer(IProcessTransport)
class EndedChild:  # type: ignore[misc]  # what the janitor calls
    """A child process that has ended (reaped: no pid), with no pipes."""

    pid = None

    def signalProcess(self, signal: object) -> None:
        pass


class PipeOfEndedChild(BareReader):
    """A pipe of an ended child that closing its pipes did not close (see
    :class:`NeverCloses`)."""

    def __init__(self) -> None:
        super().__init__()
        self.proc = EndedChild()


def _named(obj: Any) -> str:
    """How the report names a selectable: its class, fd and identity."""
    cls = type(obj)
    return f"<{cls.__module__}.{cls.__qualname__} fd {obj.fileno()} at 0x{id(obj):x}>"


def _still_open(description: str, how: str, obj: Any) -> str:
    """The report's line for ``obj``, which ``how`` did not close in time."""
    return (
        f"  - {description}: {_named(obj)}: not closed ({how} did not close it "
        f"within {ABORT_GRACE}s); it was only removed from the reactor, and its "
        f"file descriptor {obj.fileno()} is still open"
    )


class TruthfulReportTests(JanitorTestCase):
    def add_readers(self, *readers: BareReader) -> None:
        """Put ``readers`` (made in the block) on the reactor; their sockets
        closed after the test."""
        for reader in readers:
            for end in reader.sockets:
                self.addCleanup(end.close)
            reactor.addReader(reader)

    async def test_each_unclosed_named_with_the_close_tried(self) -> None:
        """Each selectable still open is named, word for word, with the
        close that was tried, or why none could be."""
        with self.assertRaises(DirtyReactorError) as caught:
            async with clean_reactor():
                bare, lose, abort = BareReader(), NeverCloses(), NeverAborts()
                port, connecting = NeverStops(), ConnectsForever()
                self.add_readers(bare, lose, abort, port, connecting)
                expected = [
                    f"  - selectable: {_named(bare)}: not closed (it has no "
                    "abortConnection(), loseConnection() or stopListening(), so "
                    "there is no way to close it); it was only removed from the "
                    f"reactor, and its file descriptor {bare.fileno()} is still open",
                    _still_open("selectable", "loseConnection()", lose),
                    _still_open("selectable", "abortConnection()", abort),
                    _still_open("listening port", "stopListening()", port),
                    _still_open("selectable", "stopConnecting()", connecting),
                ]
        lines = str(caught.exception).splitlines()
        for line in expected:
            self.assertIn(line, lines)

    async def test_unclosed_child_named_with_its_kill(self) -> None:
        """A child's selectable still open is named, word for word, with the
        kill that was tried, or the pipes closed if the child had ended."""
        with self.assertRaises(DirtyReactorError) as caught:
            async with clean_reactor():
                child, pipe = UnkillableChild(), PipeOfEndedChild()
                self.add_readers(child, pipe)
                expected = [
                    _still_open(
                        "selectable",
                        "killing its child process 99999 and closing its pipes",
                        child,
                    ),
                    _still_open(
                        "selectable",
                        "closing its pipes (its child process has ended)",
                        pipe,
                    ),
                ]
        lines = str(caught.exception).splitlines()
        for line in expected:
            self.assertIn(line, lines)

    async def test_unclosable_selectable_named(self) -> None:
        """What could not be closed is named as still open, not claimed closed."""
        with self.assertRaises(DirtyReactorError) as caught:
            async with clean_reactor():
                reader = BareReader()
                for end in reader.sockets:
                    self.addCleanup(end.close)
                reactor.addReader(reader)
        self.assertEqual(caught.exception.unclosed, (reader,))
        message = str(caught.exception)
        self.assertNotIn("All of it has been closed", message)
        self.assertRegex(
            message,
            r"Could not close 1 .*\n  - selectable: <tests\.test_janitor\.BareReader",
        )
        self.assertNotIn(reader, reactor.getReaders())

    async def test_close_that_never_completes_named(self) -> None:
        """A selectable that a close did not close within the grace period
        is reported still open, naming the close that was tried."""
        with self.assertRaises(DirtyReactorError) as caught:
            async with clean_reactor():
                readers = [NeverCloses(), NeverAborts()]
                for reader in readers:
                    for end in reader.sockets:
                        self.addCleanup(end.close)
                    reactor.addReader(reader)
        self.assertEqual(set(caught.exception.unclosed), set(readers))
        message = str(caught.exception)
        self.assertIn("not closed (loseConnection() did not close it within", message)
        self.assertIn("not closed (abortConnection() did not close it within", message)
        self.assertIn("its file descriptor", message)
        for reader in readers:
            self.assertNotIn(reader, reactor.getReaders())

    async def test_rest_said_closed(self) -> None:
        """When only some of what was found could not be closed, the report
        says the rest was."""
        with self.assertRaises(DirtyReactorError) as caught:
            async with clean_reactor():
                reader = BareReader()
                for end in reader.sockets:
                    self.addCleanup(end.close)
                reactor.addReader(reader)
                port, _ = await self.listen()
        self.assertEqual(caught.exception.unclosed, (reader,))
        self.assertIn(port, caught.exception.selectables)
        self.assertIn("The rest has been closed", str(caught.exception))

    async def test_close_that_raises_named(self) -> None:
        """A selectable whose close raised is reported still open, with
        what it raised."""
        with self.assertRaises(DirtyReactorError) as caught:
            async with clean_reactor():
                reader = RaisesOnClose()
                for end in reader.sockets:
                    self.addCleanup(end.close)
                reactor.addReader(reader)
        self.assertEqual(caught.exception.unclosed, (reader,))
        self.assertIn("closing it raised OSError: no way", str(caught.exception))
        self.assertNotIn(reader, reactor.getReaders())


class Hello(Resource):
    """Answers every GET with ``hi``."""

    isLeaf = True

    def render_GET(self, request: Any) -> bytes:
        return b"hi"


#: What a leftover call of treq's global pool is told, after the call.
POOL_HINT = (
    ": a connection cached by a persistent HTTPConnectionPool (treq's global "
    "pool, unless you passed pool=). Make the requests with "
    "cleanconn.http_client(), whose pool belongs to the scope and is closed at "
    "its end"
)


class HTTPConnectionPool:
    """A pool of the user's own, named like twisted.web's but not it."""

    def _removeConnection(self) -> None:
        """Named like the method whose timer gets the pool hint."""


class MessageTests(JanitorTestCase):
    async def test_global_pool_points_to_http_client(self) -> None:
        """A leftover of treq's global pool points the user to http_client()."""
        async with serving(Site(Hello())) as port:
            with self.assertRaises(DirtyReactorError) as caught:
                async with clean_reactor():
                    response = await treq.get(base_url(port))
                    await response.content()
        self.assertIn("HTTPConnectionPool._removeConnection", str(caught.exception))
        self.assertIn("cleanconn.http_client()", str(caught.exception))

    async def test_global_pool_hint_word_for_word(self) -> None:
        """The hint for treq's global pool is its whole text, after the call."""
        async with serving(Site(Hello())) as port:
            with self.assertRaises(DirtyReactorError) as caught:
                async with clean_reactor():
                    response = await treq.get(base_url(port))
                    await response.content()
        self.assertRegex(
            str(caught.exception),
            r"\n  - delayed call <DelayedCall [^\n]*"
            r"HTTPConnectionPool\._removeConnection\([^\n]*\)>"
            + re.escape(POOL_HINT)
            + "\n",
        )

    async def test_other_pool_gets_no_pool_hint(self) -> None:
        """A leftover _removeConnection of a pool that is not twisted.web's is
        described as the call alone, without the treq hint."""
        pool = HTTPConnectionPool()
        _, error = await self.left_call(pool._removeConnection)
        self.assertRegex(
            str(error),
            r"\n  - delayed call <DelayedCall [^\n]*"
            r"HTTPConnectionPool\._removeConnection\(\)>\n",
        )

    async def test_global_pool_works_after_cleanup(self) -> None:
        """After the report, treq's global pool still serves the same server."""
        async with serving(Site(Hello())) as port:
            with self.assertRaises(DirtyReactorError):
                async with clean_reactor():
                    response = await treq.get(base_url(port))
                    await response.content()
            try:
                response = await treq.get(base_url(port))
                self.assertEqual(await response.content(), b"hi")
            finally:
                await get_global_pool().closeCachedConnections()

    async def test_descriptions_name_the_users_objects(self) -> None:
        """A leaked serving(tls=True) is described by the user's own classes."""
        with self.assertRaises(DirtyReactorError) as caught:
            async with clean_reactor():
                scope = serving(echo_factory(), tls=True)
                port = await scope.__aenter__()
                await self.connect_raw(port.getHost())
        message = str(caught.exception)
        self.assertIn("(factory CountingFactory)", message)
        self.assertIn("(protocol Echo)", message)
        for wrapper in ("Tracked", "TLSMemoryBIO", "_TLSServerFactory", "Tracking"):
            self.assertNotIn(wrapper, message)

    async def test_factory_wrapped_by_the_user_named_innermost(self) -> None:
        """A leaked serving() of a factory the user wrapped (WrappingFactory)
        names the innermost factory, as a raw listenTCP() of it would."""
        with self.assertRaises(DirtyReactorError) as caught:
            async with clean_reactor():
                scope = serving(WrappingFactory(echo_factory()))
                port = await scope.__aenter__()
                number = port.getHost().port
        self.assertIn(
            f"  - listening port on 127.0.0.1:{number} (factory CountingFactory): "
            "<twisted.internet.tcp.Port fd ",
            str(caught.exception),
        )

    async def connect_raw(self, address: Any) -> tuple[Recorder, None]:
        """A plain TCP client (no TLS) to ``address``, closed after the test."""
        endpoint = TCP4ClientEndpoint(reactor, address.host, address.port)
        client: Recorder = await endpoint.connect(client_factory())  # type: ignore[assignment]
        self.leaves(client.transport)
        return client, None


class _Closing:
    """A selectable as Twisted leaves one whose close has begun."""

    disconnecting = True

    def getHost(self) -> str:
        return "127.0.0.1:1"

    def getPeer(self) -> str:
        return "127.0.0.1:2"


class ReactorArgumentTests(TestCase):
    def test_reactor_that_cannot_list(self) -> None:
        """A reactor that cannot list its readers is a TypeError naming what
        is needed."""
        with self.assertRaises(TypeError) as caught:
            clean_reactor(reactor=object())  # type: ignore[arg-type]
        self.assertIn("needs a reactor with getReaders()", str(caught.exception))


class OtherPatchesTests(JanitorTestCase):
    async def test_patched_before_the_block_is_put_back(self) -> None:
        """A removeReader patched on the reactor before the block is the one
        there after it."""
        removed: list[Any] = []
        original = reactor.removeReader

        def patched(selectable: Any) -> Any:
            removed.append(selectable)
            return original(selectable)

        self.patch(reactor, "removeReader", patched)
        port, _ = await self.listen()
        client, _ = await self.connect(port)
        async with clean_reactor():
            client.transport.pauseProducing()
            client.transport.resumeProducing()
        self.assertIs(reactor.removeReader, patched)
        self.assertIn(client.transport, removed)

    async def test_patched_in_the_block_stays(self) -> None:
        """A removeReader patched again inside the block stays after it, and
        what it forwards to goes on working."""
        port, _ = await self.listen()
        client, _ = await self.connect(port)
        async with clean_reactor():
            inner = reactor.removeReader
            self.patch(reactor, "removeReader", lambda s: inner(s))
            patched = reactor.removeReader
        self.assertIs(reactor.removeReader, patched)
        client.transport.pauseProducing()
        self.assertNotIn(client.transport, reactor.getReaders())
        client.transport.resumeProducing()
        async with clean_reactor():
            pass


class DescriptionTests(TestCase):
    def test_closing_connection_is_not_called_paused(self) -> None:
        """A connection off the reactor because it is closing is said to be
        closing, not paused."""
        from cleanconn._janitor import describe_selectable

        text = describe_selectable(_Closing(), paused=True)
        self.assertIn("closing", text)
        self.assertNotIn("paused", text)

    def test_bare_objects_described(self) -> None:
        """Objects that have none of the attributes looked for are still
        described (any object can be left on a reactor)."""
        from cleanconn._janitor import (
            describe_connector,
            describe_process,
            describe_selectable,
        )

        class Process:
            pid = 7

        class Listening:
            def stopListening(self) -> None:
                pass

        self.assertEqual(
            describe_process(Process()),
            "child process 7, started in the block and never waited for (not reaped)",
        )
        self.assertRegex(
            describe_connector(object()),
            r"^connect still in progress, never waited for: <builtins\.object at ",
        )
        self.assertRegex(
            describe_selectable(Listening()),
            r"^listening port: <tests\.test_janitor\.DescriptionTests",
        )

    def test_error_describes_its_leftovers(self) -> None:
        """A DirtyReactorError given only its leftovers describes each."""
        call = reactor.callLater(1000, lambda: None)
        self.addCleanup(call.cancel)
        error = DirtyReactorError([_Closing()], [call], processes=[7], unclosed=[call])
        message = str(error)
        self.assertIn("connection '127.0.0.1:1' -> '127.0.0.1:2'", message)
        self.assertIn("  - delayed call <DelayedCall", message)
        self.assertIn("child process 7, not reaped", message)
        self.assertIn("Could not close 1 of them", message)
        self.assertIn("\n  - <DelayedCall", message)


def _new_waker() -> Any:
    """A new waker of Twisted's own kind, as a reactor makes for itself."""
    from twisted.internet import posixbase

    waker: Any = posixbase._Waker
    try:
        return waker()  # Twisted 23.8 and later
    except TypeError:
        return waker(reactor)  # earlier ones take their reactor


class MachineryTests(JanitorTestCase):
    async def test_twisted_waker_added_in_block_not_reported(self) -> None:
        """A waker of Twisted's own that the reactor does not name, added in
        the block, is machinery, not a leak."""
        async with clean_reactor():
            waker = _new_waker()
            self.addCleanup(waker.connectionLost, None)
            reactor.addReader(waker)
            self.addCleanup(reactor.removeReader, waker)


#: A child that starts a process of its own, which holds the child's pipes
#: (and fd 3) and waits for the end of its input, then ends at once.
_LEAVE_GRANDCHILD = (
    "import subprocess, sys; subprocess.Popen([sys.executable, '-c', "
    "'import sys; sys.stdin.read()'], pass_fds=(3,))"
)


class Parent(Child):
    """A child process protocol whose ``exited`` fires once it is reaped
    (its pipes may stay open longer)."""

    def __init__(self) -> None:
        super().__init__()
        self.exited: defer.Deferred[None] = defer.Deferred()

    def processExited(self, reason: Failure) -> None:
        self.exited.callback(None)


class EndedChildTests(JanitorTestCase):
    def watch_grandchild(self) -> tuple[socket.socket, Recorder]:
        """A socket to hand a child as its fd 3, and the protocol on our end,
        whose ``lost`` fires once every process holding it has ended."""
        ours, theirs = socket.socketpair()
        self.addCleanup(theirs.close)
        watcher = client_factory()
        reactor.adoptStreamConnection(ours.fileno(), socket.AF_UNIX, watcher)
        ours.close()
        (end,) = watcher.built
        self.leaves(end.transport)
        return theirs, end

    async def test_pipes_of_a_reaped_child_closed(self) -> None:
        """Leaked pipes of a child already reaped, held open by a process it
        started, are closed (no kill to send), so that process ends."""
        theirs, end = self.watch_grandchild()
        parent = Parent()

        async def end_all(transport: Any) -> None:
            if not parent.ended.called:
                transport.loseConnection()  # the grandchild reads its end
            await defer.gatherResults([parent.ended, end.lost])

        with self.assertRaises(DirtyReactorError) as caught:
            async with clean_reactor():
                transport = reactor.spawnProcess(
                    parent,
                    sys.executable,
                    [sys.executable, "-c", _LEAVE_GRANDCHILD],
                    env=None,
                    childFDs={0: "w", 1: "r", 2: "r", 3: theirs.fileno()},
                )
                theirs.close()
                self.addCleanup(lambda: defer.ensureDeferred(end_all(transport)))
                await parent.exited
        self.assertEqual(caught.exception.unclosed, ())
        await end.lost  # the grandchild read the end of its input and ended

    test_pipes_of_a_reaped_child_closed.timeout = 10


class WritersOnlyReactor(Clock):
    """
    A reactor that lists its readers and writers and can take a writer off,
    but has no removeReader: a stand-in for a partial IReactorFDSet, which
    none of Twisted's own reactors is. Nothing is ever read or written.
    """

    def __init__(self) -> None:
        super().__init__()
        self.writers: list[Any] = []

    def getReaders(self) -> list[Any]:
        return []

    def getWriters(self) -> list[Any]:
        return list(self.writers)

    def addWriter(self, writer: Any) -> None:
        self.writers.append(writer)

    def removeWriter(self, writer: Any) -> None:
        self.writers.remove(writer)


class Abortable(BareReader):
    """A selectable that an abort closes at once."""

    disconnected = False

    def abortConnection(self) -> None:
        for end in self.sockets:
            end.close()
        self.disconnected = True


@implementer(IReadDescriptor)
class Slotted(_Reader):
    """A reader that cannot be weakly referenced (``__slots__`` all the way)."""

    __slots__ = ()


class WatchTests(JanitorTestCase):
    async def test_writer_taken_off_a_reactor_without_remove_reader(self) -> None:
        """On a reactor with removeWriter but no removeReader, a writer made
        and taken off in the block is reported as paused."""
        clock = WritersOnlyReactor()
        with self.assertRaises(DirtyReactorError) as caught:
            async with clean_reactor(reactor=clock):  # type: ignore[arg-type]
                writer = Abortable()
                for end in writer.sockets:
                    self.addCleanup(end.close)
                clock.addWriter(writer)
                clock.removeWriter(writer)
        self.assertEqual(caught.exception.paused, (writer,))

    async def test_reader_without_weak_references_taken_off(self) -> None:
        """A reader that cannot be weakly referenced, made and taken off the
        reactor in the block, is taken off, and the block is clean."""
        async with clean_reactor():
            reader = Slotted()
            for end in reader.sockets:
                self.addCleanup(end.close)
            reactor.addReader(reader)
            self.addCleanup(reactor.removeReader, reader)
            reactor.removeReader(reader)
        self.assertNotIn(reader, reactor.getReaders())
