"""
cleanconn in the shapes users write besides the README's nested blocks:
one ``connected()`` per client in its own task through an
``AsyncExitStack``, ``enter_scope()`` in ``setUp``, TLS, HTTP, and the
README cycle under ``deadline()``, and with a stream client.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred, gatherResults
from twisted.internet.protocol import Factory
from twisted.web.server import Site

from cleanconn import (
    base_url,
    connected,
    deadline,
    enter_scope,
    http_client,
    proxied,
    serving,
)

from ._cleanconn import MANY_TIMEOUT
from ._protocols import Collector, Echo
from ._shape_hand import Hello
from ._testcase import Cleanups


async def _client_task(
    port: Any,
    echoed: list[Deferred[None]],
    everyone: Deferred[None],
    count: int,
    release: Deferred[None],
) -> None:
    """One client, as a helper or a task writes it: its own scope, entered
    through an ``AsyncExitStack``; it holds the connection until released."""
    async with AsyncExitStack() as stack:
        client = await stack.enter_async_context(
            connected(port, Factory.forProtocol(Collector), timeout=MANY_TIMEOUT)
        )
        client.transport.write(b"x")
        await client.read(1)
        echoed.append(release)
        if len(echoed) == count:
            everyone.callback(None)
        await release


async def _tasks(count: int) -> None:
    """``count`` clients of one port, each ``_client_task`` in its own task."""
    async with serving(Factory.forProtocol(Echo), timeout=MANY_TIMEOUT) as port:
        everyone: Deferred[None] = Deferred()
        echoed: list[Deferred[None]] = []
        releases: list[Deferred[None]] = [Deferred() for _ in range(count)]
        tasks = [
            ensureDeferred(_client_task(port, echoed, everyone, count, release))
            for release in releases
        ]
        await everyone
        for release in releases:
            release.callback(None)
        await gatherResults(tasks)


async def stack_cycles(reactor: Any, count: int) -> None:
    """``count`` cycles, the client in its own task through an AsyncExitStack."""
    for _ in range(count):
        await _tasks(1)


async def stack_fanout(reactor: Any, count: int) -> None:
    """``count`` clients at once, each in its own task and scope."""
    await _tasks(count)


async def setup_cycles(reactor: Any, count: int) -> None:
    """``count`` tests: ``enter_scope()`` in setUp, echo, run the cleanups."""
    for _ in range(count):
        test = Cleanups()
        port = await enter_scope(test, serving(Factory.forProtocol(Echo)))
        client = await enter_scope(
            test, connected(port, Factory.forProtocol(Collector))
        )
        client.transport.write(b"x")
        await client.read(1)
        await test.run_cleanups()


async def tls_cycles(reactor: Any, count: int, ca: Any) -> None:
    """``count`` TLS cycles on ``ca``'s certificates (``serving(tls=ca)``)."""
    for _ in range(count):
        async with serving(Factory.forProtocol(Echo), tls=ca) as port:
            async with connected(port, Factory.forProtocol(Collector)) as client:
                client.transport.write(b"x")
                await client.read(1)


async def http_cycles(reactor: Any, count: int) -> None:
    """``count`` HTTP cycles: serve a Site, GET, read the body, exit."""
    resource = Hello()
    for _ in range(count):
        async with serving(Site(resource)) as port:
            async with http_client(port) as client:
                response = await client.get(base_url(port))
                if await response.content() != b"hi":
                    raise AssertionError("wrong body")


async def _one_cycle() -> None:
    """The README cycle, once."""
    async with serving(Factory.forProtocol(Echo)) as port:
        async with connected(port, Factory.forProtocol(Collector)) as client:
            client.transport.write(b"x")
            await client.read(1)


#: The README cycle under a deadline that does not fire.
_limited_cycle = deadline(60)(_one_cycle)


async def plain_cycles(reactor: Any, count: int) -> None:
    """``count`` README cycles, each its own coroutine (the baseline of
    ``deadline_cycles``)."""
    for _ in range(count):
        await _one_cycle()


async def stream_cycles(reactor: Any, count: int) -> None:
    """``count`` README cycles with a stream client: connect, write,
    ``readexactly()``, exit."""
    for _ in range(count):
        async with serving(Factory.forProtocol(Echo)) as port:
            async with connected(port) as stream:
                stream.write(b"x")
                await stream.readexactly(1)


async def proxied_cycles(reactor: Any, count: int) -> None:
    """``count`` README cycles through ``proxied()`` with no fault: serve,
    proxy, connect to the proxy, echo one byte, exit (both legs waited for)."""
    for _ in range(count):
        async with serving(Factory.forProtocol(Echo)) as port:
            async with proxied(port) as proxy:
                async with connected(proxy, Factory.forProtocol(Collector)) as client:
                    client.transport.write(b"x")
                    await client.read(1)


async def deadline_cycles(reactor: Any, count: int) -> None:
    """``count`` README cycles, each under ``@deadline(60)``."""
    for _ in range(count):
        await _limited_cycle()
