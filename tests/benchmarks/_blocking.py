"""Blocking sockets, no event loop: the floor no framework can beat."""

from __future__ import annotations

import socket
from collections.abc import Callable
from time import perf_counter

from ._protocols import BACKLOG


def _run(count: int, at_peak: Callable[[], object]) -> tuple[float, float]:
    start = perf_counter()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(BACKLOG)
    address = listener.getsockname()
    clients, servers = [], []
    for _ in range(count):
        clients.append(socket.create_connection(address))
        servers.append(listener.accept()[0])
    for client in clients:
        client.sendall(b"x")
    for server in servers:
        server.sendall(server.recv(65536))
    for client in clients:
        if client.recv(1) != b"x":
            raise AssertionError("no echo")
    at_peak()
    exiting = perf_counter()
    for client in clients:
        client.close()
    listener.close()
    for server in servers:
        if server.recv(65536) != b"":
            raise AssertionError("expected the client's close")
        server.close()
    end = perf_counter()
    return end - start, end - exiting


def cycle(count: int) -> list[tuple[float, float]]:
    """Listen, connect, echo one byte, tear down; ``(total, teardown)`` each."""
    return [_run(1, lambda: None) for _ in range(count)]


def fanout(count: int, at_peak: Callable[[], object]) -> tuple[float, float]:
    """``count`` clients at once; ``(total, teardown)``."""
    return _run(count, at_peak)
