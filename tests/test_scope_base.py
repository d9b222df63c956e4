"""
The shape every scope shares (cleanconn._scope.Scope), through the smallest
scope that owns a connection: what a new scope gets without writing it.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory

from cleanconn import CleanupTimeout, ConnectTimeout, ProtocolError, connected, serving
from cleanconn._connections import ConnectionSet
from cleanconn._scope import Scope
from cleanconn._teardown import Closing
from cleanconn._tracked import Tracked, tracking_factory

from ._helpers import CountingFactory, Paused, Recorder, TestCase, echo_factory, turn


class Dialed(Scope[Any]):
    """
    The smallest scope that owns a connection: connect with an endpoint;
    the block gets the protocol; the exit closes it and waits. All it says
    is what is particular to it: its name, how it enters, what it closes.
    """

    name = "dialed()"

    def __init__(self, endpoint: Any, factory: Any, timeout: float = 5.0) -> None:
        super().__init__(None, timeout)
        self._endpoint = endpoint
        self._factory = factory
        self._conns = ConnectionSet()

    async def _enter(self) -> Any:
        factory = tracking_factory(self._factory, self._conns, "client")
        conn: Tracked = await self.within(
            self._endpoint.connect(factory), "the connection was made"
        )
        return conn.wrapped

    def _close(self, closing: Closing) -> None:
        closing.close(list(self._conns.open))

    def _closed(self, errors: list[BaseException]) -> list[Tracked]:
        return self._conns.to_report()


class Gives(Scope[Any]):
    """A scope that owns nothing: it says only its name and what it gives."""

    name = "gives()"

    def __init__(self, value: object) -> None:
        super().__init__(None, 5.0)
        self._value = value

    def _enter(self) -> Any:
        return self._value


class Hangs:
    """A client endpoint whose connect never completes (a test double:
    a connect that hangs cannot be made on demand on loopback)."""

    def connect(self, factory: Any) -> Deferred[Any]:
        return Deferred()


class Raises(Recorder):
    """A client whose dataReceived raises."""

    def dataReceived(self, data: bytes) -> None:
        raise ValueError("bad data")


def _endpoint(port: Any) -> TCP4ClientEndpoint:
    return TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)


class ScopeBaseTests(TestCase):
    async def test_enters_and_closes_both_ends(self) -> None:
        """The smallest scope connects, yields the protocol, and its exit
        waits for connectionLost."""
        client = CountingFactory(Recorder)
        async with serving(echo_factory()) as port:
            async with Dialed(_endpoint(port), client) as proto:
                self.assertIs(proto, client.built[0])
            self.assertEqual(proto.lost_count, 1)

    async def test_entered_once(self) -> None:
        """A scope object cannot be entered twice: the error says to call
        the scope's function again."""
        async with serving(echo_factory()) as port:
            scope = Dialed(_endpoint(port), CountingFactory(Recorder))
            async with scope:
                with self.assertRaises(RuntimeError) as caught:
                    await scope.__aenter__()
        self.assertEqual(
            str(caught.exception),
            f"this {scope.name} scope was already entered; call {scope.name} "
            "again for a new one",
        )

    async def test_entry_deadline(self) -> None:
        """A wait in the entry ends at the deadline with ConnectTimeout
        naming the scope and what it waited for."""
        with self.assertRaises(ConnectTimeout) as caught:
            async with Dialed(Hangs(), CountingFactory(Recorder), timeout=0.2):
                self.fail("the body ran")
        self.assertEqual(caught.exception.scope, "dialed()")
        self.assertEqual(caught.exception.waiting, "the connection was made")

    async def test_body_exception_wins(self) -> None:
        """The body's exception goes on, the cleanup's attached to it."""
        server = CountingFactory(Paused)
        boom = KeyError("body")
        with self.assertRaises(KeyError) as caught:
            async with serving(server) as port:
                async with Dialed(_endpoint(port), CountingFactory(Recorder), 0.2) as p:
                    p.transport.write(b"x" * (8 * 1024 * 1024))
                    raise boom
        self.assertIs(caught.exception, boom)
        errors = caught.exception.cleanconn_cleanup_errors
        self.assertIsInstance(errors[0], CleanupTimeout)

    async def test_callback_errors_reported(self) -> None:
        """What the user's callbacks raised is reported by the exit."""
        with self.assertRaises(ProtocolError):
            async with serving(echo_factory()) as port:
                async with Dialed(_endpoint(port), Factory.forProtocol(Raises)) as p:
                    p.transport.write(b"x")
                    await p.lost
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)

    async def test_cancelled_exit_still_waits(self) -> None:
        """A cancelled exit aborts what is left, waits for it, then raises
        CancelledError."""
        server = CountingFactory(Paused)
        made: Deferred[Any] = Deferred()

        async def body(port: Any) -> None:
            async with Dialed(_endpoint(port), CountingFactory(Recorder), 60) as p:
                p.transport.write(b"x" * (8 * 1024 * 1024))
                made.callback(p)

        async with serving(server) as port:
            running = ensureDeferred(body(port))
            proto = await made
            await turn()
            running.cancel()
            with self.assertRaises(CancelledError):
                await running
            self.assertEqual(proto.lost_count, 1)

    async def test_scope_that_owns_nothing(self) -> None:
        """A scope needs no close of its own: it gives its value, exits at once."""
        scope = Gives("value")
        self.assertEqual(repr(scope), "<cleanconn gives() scope>")
        async with scope as value:
            self.assertEqual(value, "value")


class _Frozen(Exception):
    """An exception type that refuses new attributes (and so notes); it
    keeps the names it was asked to set, in ``refused``."""

    refused: list[str]

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        object.__setattr__(self, "refused", [])

    def __setattr__(self, name: str, value: object) -> None:
        self.refused.append(name)
        raise AttributeError(f"{type(self).__name__} takes no attributes")


class _AnswersAnything(Exception):
    """An exception that answers 42 for any attribute it does not have."""

    def __getattr__(self, name: str) -> object:
        return 42


class _AttributesRaise(Exception):
    """An exception whose missing attributes raise something unexpected."""

    def __getattr__(self, name: str) -> object:
        raise RuntimeError(f"no {name} here")


class _ReprRaises(Exception):
    """An exception that cannot be shown: its repr and str raise."""

    def __repr__(self) -> str:
        raise RuntimeError("repr broken")

    __str__ = __repr__


class _LosesBadly(Recorder):
    def connectionLost(self, reason: Any = None) -> None:
        super().connectionLost(reason)
        raise _ReprRaises()


class BodyWinsTests(TestCase):
    async def test_cleanup_errors_of_nested_exits_all_attached(self) -> None:
        """The cleanup errors of two nested exits are both attached to the
        body's exception, innermost first."""
        boom = RuntimeError("boom")
        with self.assertRaises(RuntimeError) as caught:
            async with serving(CountingFactory(Paused)) as port:
                # Through an endpoint, the server side is not the scope's to
                # close: the client's unsent bytes keep its exit waiting.
                endpoint = _endpoint(port)
                async with connected(endpoint, timeout=0.3) as outer:
                    async with connected(endpoint, timeout=0.3) as inner:
                        inner.write(EIGHT_MB)
                        outer.write(EIGHT_MB)
                        raise boom
        self.assertIs(caught.exception, boom)
        errors = boom.cleanconn_cleanup_errors
        self.assertEqual([type(e) for e in errors], [CleanupTimeout] * 2)
        self.assertEqual([e.scope for e in errors], ["connected()"] * 2)
        self.assertIsNot(errors[0], errors[1])

    async def test_body_exception_that_takes_no_attributes(self) -> None:
        """A body exception that refuses attributes (so notes too) still
        propagates as it is when the exit has a cleanup error."""
        boom = _Frozen("boom")
        with self.assertRaises(_Frozen) as caught:
            async with serving(CountingFactory(Paused)) as port:
                async with connected(_endpoint(port), timeout=0.3) as stream:
                    stream.write(EIGHT_MB)
                    raise boom
        self.assertIs(caught.exception, boom)
        self.assertIn("cleanconn_cleanup_errors", boom.refused)  # there was one

    async def body_wins_over_a_cleanup_timeout(self, boom: BaseException) -> None:
        """Raise ``boom`` in a block whose exit times out; check it goes on."""
        with self.assertRaises(type(boom)) as caught:
            async with serving(CountingFactory(Paused)) as port:
                async with connected(_endpoint(port), timeout=0.3) as stream:
                    stream.write(EIGHT_MB)
                    raise boom
        self.assertIs(caught.exception, boom)

    async def test_body_exception_whose_attributes_answer_anything(self) -> None:
        """A body exception that answers any attribute (a __getattr__ that
        returns a value) goes on as it is when the exit has a cleanup error."""
        await self.body_wins_over_a_cleanup_timeout(_AnswersAnything("boom"))

    async def test_body_exception_whose_attributes_raise(self) -> None:
        """A body exception whose __getattr__ raises something other than
        AttributeError goes on as it is when the exit has a cleanup error."""
        await self.body_wins_over_a_cleanup_timeout(_AttributesRaise("boom"))


class UsersReprTests(TestCase):
    async def test_callback_exception_that_cannot_be_shown(self) -> None:
        """A callback exception whose repr raises is still reported by
        ProtocolError, which names its type."""
        with self.assertRaises(ProtocolError) as caught:
            async with serving(CountingFactory(_LosesBadly)) as port:
                async with connected(port):
                    pass
        [(_, where, error)] = caught.exception.errors
        self.assertEqual(where, "connectionLost")
        self.assertIsInstance(error, _ReprRaises)
        self.assertIn("_ReprRaises", str(caught.exception))
        self.assertEqual(len(self.flushLoggedErrors(_ReprRaises)), 1)  # Twisted's log


EIGHT_MB = b"x" * (8 * 1024 * 1024)
