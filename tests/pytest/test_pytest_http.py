# mypy: disallow-untyped-decorators=False
"""
cleanconn from pytest-twisted: ``pytest tests/pytest``.

``async def`` tests marked with ``pytest_twisted.ensureDeferred``, an
``inlineCallbacks`` test, and a fixture that yields a serving port from an
async generator (``pytest_twisted.async_yield_fixture``): the port stops,
and its connections close, when the fixture's generator resumes after the
test. pytest-twisted has no dirty-reactor check of its own: this
directory's conftest switches on ``cleanconn.pytest_plugin``, so each test
(fixture included) runs inside ``clean_reactor()``, and one test checks the
client's block alone with a ``clean_reactor()`` of its own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator
from typing import Any

import pytest_twisted  # type: ignore[import-untyped]
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from cleanconn import ServingPort, base_url, clean_reactor, http_client, serving


class Hello(Resource):
    """Answers every GET with ``hello``."""

    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        return b"hello"


@pytest_twisted.async_yield_fixture
async def web_port() -> AsyncIterator[ServingPort]:
    """A twisted.web Site serving on loopback for the length of one test."""
    async with serving(Site(Hello())) as port:
        yield port


@pytest_twisted.ensureDeferred
async def test_get(web_port: ServingPort) -> None:
    """An async def test gets an answer from the fixture's Site."""
    async with http_client(web_port) as client:
        response = await client.get(base_url(web_port))
        assert response.code == 200
        assert await response.content() == b"hello"


@pytest_twisted.ensureDeferred
async def test_client_leaves_nothing(web_port: ServingPort) -> None:
    """The client's connections and pool timers are gone when its block ends."""
    async with clean_reactor():
        async with http_client(web_port) as client:
            response = await client.get(base_url(web_port))
            assert response.code == 200
        # The server side of the connection was waited for, too.
        assert web_port.server_protocols == []


async def _fetch(port: ServingPort) -> bytes:
    async with http_client(port) as client:
        response = await client.get(base_url(port))
        body: bytes = await response.content()
        return body


@pytest_twisted.inlineCallbacks
def test_inline_callbacks(web_port: ServingPort) -> Generator[Deferred[Any], Any, None]:
    """An inlineCallbacks test drives the scopes through a coroutine."""
    body = yield ensureDeferred(_fetch(web_port))
    assert body == b"hello"
