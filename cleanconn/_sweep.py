"""
``sweep_fragmentation()``: run a test body once per way of cutting the byte
stream, through a :func:`~cleanconn.proxied` proxy, and say which failed.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Sequence

from ._errors import FragmentationFailed
from ._faults import Fault, slicer
from ._proxy import Proxy, proxied
from ._reactor import CleanconnReactor
from ._scope import DEFAULT_TIMEOUT

#: The chunkings tried by default, by name: whole (as loopback delivers),
#: one byte at a time, two, three, and random sizes from 1 to 15 bytes.
CHUNKINGS: tuple[tuple[str, Sequence[Fault]], ...] = (
    ("whole", ()),
    ("1 byte", (slicer(1),)),
    ("2 bytes", (slicer(2),)),
    ("3 bytes", (slicer(3),)),
    ("1 to 15 bytes", (slicer(8, variation=7),)),
)


async def sweep_fragmentation(
    target: object,
    body: Callable[[Proxy], Awaitable[object]],
    *,
    chunkings: Sequence[tuple[str, Sequence[Fault]]] = CHUNKINGS,
    seed: int | None = None,
    reactor: CleanconnReactor | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> None:
    """
    Run ``body(proxy)`` once per chunking, each time through a fresh
    :func:`~cleanconn.proxied` proxy to ``target`` that cuts the bytes of
    both directions that way; then raise
    :class:`~cleanconn.FragmentationFailed` naming each chunking under
    which the body failed.

    .. code-block:: python

        async def exchange(proxy: Proxy) -> None:
            async with connected(proxy, client_factory) as client:
                assert await client.request(b"ping") == b"pong"

        async with serving(factory) as port:
            await sweep_fragmentation(port, exchange)

    A protocol that assumes one message per ``dataReceived`` passes
    "whole" and fails the others; a correct one passes them all.

    :param target: what :func:`~cleanconn.proxied` takes.
    :param body: an async function of the proxy; it connects through it.
    :param chunkings: ``(name, faults)`` pairs; by default whole, 1, 2 and
        3 bytes, and random sizes from 1 to 15 bytes.
    :param seed: the seed of the random sizes (the same for every run); a
        fresh one by default, named in the error.
    :raises FragmentationFailed: the body failed under some chunkings.
    """
    if not callable(body):
        raise TypeError(
            f"sweep_fragmentation() takes an async function of the proxy as "
            f"body, got {body!r}"
        )
    if seed is None:
        seed = random.SystemRandom().randrange(1 << 32)
    failures: list[tuple[str, BaseException]] = []
    for name, faults in chunkings:
        try:
            async with proxied(
                target, faults=faults, seed=seed, reactor=reactor, timeout=timeout
            ) as proxy:
                await body(proxy)
        except Exception as e:
            failures.append((name, e))
    if failures:
        error = FragmentationFailed(failures, [n for n, _ in chunkings], seed)
        raise error from failures[0][1]
