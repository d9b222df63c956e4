"""
Test cases on cleanconn's ``TestCase`` that test_deadline.py runs and
inspects (not collected by trial: this module's name does not start with
``test_``).
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer

from cleanconn import TestCase, connected, serving

from ._helpers import client_factory, echo_factory


class ClassTimeout(TestCase):
    """Stuck inside serving()/connected(), with a class-level timeout."""

    timeout = 0.5
    seen: dict[str, Any]

    async def test(self) -> None:
        async with serving(echo_factory()) as port:
            async with connected(port, client_factory()) as client:
                self.seen["client"] = client
                self.seen["server"] = port.server_protocol(client)
                await defer.Deferred()  # stuck: class timeout


class MethodTimeout(TestCase):
    """A method's ``timeout`` wins over the class's."""

    timeout = 100

    async def test(self) -> None:
        await defer.Deferred()  # stuck: method timeout

    test.timeout = 0.3


class DefaultTimeout(TestCase):
    """No ``timeout`` at all: trial's default applies."""

    async def test(self) -> None:
        await defer.Deferred()  # stuck: default timeout


class StuckSetUp(TestCase):
    """An ``async def`` setUp is under the timeout too."""

    timeout = 0.3
    ran: list[str]

    async def setUp(self) -> None:  # type: ignore[override]
        await defer.Deferred()  # stuck: setUp

    def test(self) -> None:
        self.ran.append("test")


class Passing(TestCase):
    """An ``async def`` test that ends in time."""

    timeout = 5

    async def test(self) -> None:
        async with serving(echo_factory()) as port:
            async with connected(port, client_factory()) as client:
                client.transport.write(b"x")
                await client.received(1)


class Synchronous(TestCase):
    """A synchronous test: trial's timeout, as in trial."""

    timeout = 7
    seen: dict[str, Any]

    def test(self) -> None:
        self.seen["timeout"] = self.getTimeout()
        self.seen["method"] = self.test


class ReturnsDeferred(TestCase):
    """A test returning a Deferred that never fires: trial's own timeout."""

    timeout = 0.3

    def test(self) -> defer.Deferred[None]:
        return defer.Deferred()
