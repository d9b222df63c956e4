"""
``sweep_fragmentation()``: run a test body once per way of cutting the byte
stream, through a :func:`~cleanconn.proxied` proxy, and say which failed.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Sequence

from twisted.internet.defer import CancelledError

from ._errors import FragmentationFailed
from ._faults import Fault, slicer
from ._proxy import Proxy, proxied
from ._reactor import CleanconnReactor
from ._scope import DEFAULT_TIMEOUT, check_timeout

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

    The body is not bounded here (``timeout`` bounds each proxy's exit):
    put the sweep under a :func:`~cleanconn.deadline`, which cancels it.
    Through TLS the slicer cuts the encrypted bytes, which TLS puts back
    together before the protocol sees them: sweep the protocol over plain
    TCP to find its framing bugs. ``slicer(1)`` delivers some 20 KB a
    second (each piece is written on its own): keep the exchange small.

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
    timeout = check_timeout(timeout, "sweep_fragmentation()")
    if seed is None:
        seed = random.getrandbits(32)
    elif isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"sweep_fragmentation(): seed must be an int, got {seed!r}")
    runs = _checked(chunkings)
    failures: list[tuple[str, BaseException]] = []
    for name, faults in runs:
        try:
            async with proxied(
                target, faults=faults, seed=seed, reactor=reactor, timeout=timeout
            ) as proxy:
                await body(proxy)
        except CancelledError:
            raise  # the sweep itself was cancelled (a deadline): not a failure
        except Exception as e:
            failures.append((name, e))
    if failures:
        error = FragmentationFailed(failures, [n for n, _ in runs], seed)
        raise error from failures[0][1]


def _checked(
    chunkings: Sequence[tuple[str, Sequence[Fault]]],
) -> list[tuple[str, tuple[Fault, ...]]]:
    """``chunkings`` as ``(name, faults)`` pairs with unique names, or a
    ``TypeError``/``ValueError`` saying what is wrong."""
    runs: list[tuple[str, tuple[Fault, ...]]] = []
    for item in chunkings:
        if (
            not isinstance(item, tuple)
            or len(item) != 2
            or not isinstance(item[0], str)
            or isinstance(item[1], Fault)
            or not all(isinstance(f, Fault) for f in item[1])
        ):
            raise TypeError(
                "sweep_fragmentation(): each chunking is a (name, faults) pair, "
                'such as ("1 byte", [slicer(1)]); got ' + repr(item)
            )
        if any(name == item[0] for name, _ in runs):
            raise ValueError(
                f"sweep_fragmentation(): two chunkings are named {item[0]!r}"
            )
        runs.append((item[0], tuple(item[1])))
    if not runs:
        raise ValueError("sweep_fragmentation(): no chunkings to run")
    return runs
