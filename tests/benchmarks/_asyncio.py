"""asyncio streams: ``start_server`` / ``open_connection``, waiting for both sides."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from time import perf_counter

from ._protocols import BACKLOG


async def _run(count: int, at_peak: Callable[[], object]) -> tuple[float, float]:
    loop = asyncio.get_running_loop()
    start = perf_counter()
    handlers: list[asyncio.Future[None]] = []

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        done = loop.create_future()
        handlers.append(done)
        try:
            while data := await reader.read(65536):
                writer.write(data)
            writer.close()
            await writer.wait_closed()
        finally:
            done.set_result(None)

    server = await asyncio.start_server(echo, "127.0.0.1", 0, backlog=BACKLOG)
    host, port = server.sockets[0].getsockname()[:2]

    async def client() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"x")
        await reader.readexactly(1)
        return reader, writer

    clients = await asyncio.gather(*(client() for _ in range(count)))
    at_peak()
    exiting = perf_counter()
    for _, writer in clients:
        writer.close()
    server.close()
    await asyncio.gather(*(writer.wait_closed() for _, writer in clients))
    await server.wait_closed()
    await asyncio.gather(*handlers)
    end = perf_counter()
    return end - start, end - exiting


def cycle(count: int) -> list[tuple[float, float]]:
    """Listen, connect, echo one byte, tear down; ``(total, teardown)`` each."""

    async def main() -> list[tuple[float, float]]:
        return [await _run(1, lambda: None) for _ in range(count)]

    return asyncio.run(main())


def fanout(count: int, at_peak: Callable[[], object]) -> tuple[float, float]:
    """``count`` clients at once; ``(total, teardown)``."""
    return asyncio.run(_run(count, at_peak))
