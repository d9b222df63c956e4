"""
Test cases that test_scopes.py runs and inspects (not collected by trial:
this module's name does not start with ``test_``).
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import deferLater

from cleanconn import connected, enter_scope, serving

from ._helpers import TestCase, client_factory, echo_factory


class Recording:
    """An async context manager that logs its entry and exit in ``log``."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log

    async def __aenter__(self) -> str:
        self.log.append(f"enter {self.name}")
        return self.name

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.log.append(f"exit {self.name}")
        # An exit that suspends, as a real scope's does: one reactor turn.
        await deferLater(reactor, 0, lambda: None)
        self.log.append(f"{self.name} closed")


class Ordered(TestCase):
    """Enters two recording scopes in setUp; logs the test and tearDown."""

    log: list[str]

    async def setUp(self) -> None:  # type: ignore[override]
        self.log.append(await enter_scope(self, Recording("A", self.log)))
        self.log.append(await enter_scope(self, Recording("B", self.log)))

    def tearDown(self) -> None:
        self.log.append("tearDown")

    def test(self) -> None:
        self.log.append("test")


class Failing(TestCase):
    """Serves and connects in setUp, then fails."""

    seen: dict[str, Any]

    async def setUp(self) -> None:  # type: ignore[override]
        self.port = await enter_scope(self, serving(echo_factory()))
        self.client = await enter_scope(self, connected(self.port, client_factory()))
        self.seen.update(port=self.port, client=self.client)

    def test(self) -> None:
        self.fail("this test fails on purpose")


class SetUpFails(TestCase):
    """Serves in setUp, then setUp raises."""

    seen: dict[str, Any]

    async def setUp(self) -> None:  # type: ignore[override]
        self.seen["port"] = await enter_scope(self, serving(echo_factory()))
        raise RuntimeError("setUp fails on purpose")

    def test(self) -> None:
        """Never runs."""
