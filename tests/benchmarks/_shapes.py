"""
The shapes measured per unit: each one as cleanconn writes it and as a
careful user writes it by hand, with how many units each measurement runs.

A contender is ``run(reactor, count)``: ``count`` units (cycles, clients,
tests or requests) on the running reactor, everything torn down and waited
for when it returns.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

Run = Callable[[Any, int], Awaitable[object]]

#: The contender every shape is compared with.
HAND = "handwritten"


@dataclass(frozen=True)
class Shape:
    """One shape: its contenders and how many units each measurement runs."""

    #: The row title on the page (Markdown).
    title: str
    #: What one unit is: ``cycle``, ``client``, ``test``, ``request``.
    unit: str
    #: ``(N1, N2)`` units for the two instruction-counted runs.
    counted: tuple[int, int]
    #: Units per timed run (wall and CPU time).
    timed: int
    #: Units run first, unmeasured (caches, imports, first listen).
    warm: int
    #: The highest instructions per unit ratio to the hand-written that
    #: meets the goal.
    limit: float
    #: ``"cleanconn"`` and :data:`HAND`, by name.
    contenders: dict[str, Run]


@cache
def shared_ca() -> Any:
    """The certificates both TLS contenders use, made once per process."""
    from cleanconn import ThrowawayCA

    return ThrowawayCA()


def _readme_cycle(reactor: Any, count: int) -> Awaitable[object]:
    from . import _cleanconn

    return _cleanconn.cycle(reactor, count)


def _hand_cycle(reactor: Any, count: int) -> Awaitable[object]:
    from ._handwritten import handwritten

    return handwritten.cycle(reactor, count)


def _stack_cycle(reactor: Any, count: int) -> Awaitable[object]:
    from ._shape_cleanconn import stack_cycles

    return stack_cycles(reactor, count)


def _hand_task_cycle(reactor: Any, count: int) -> Awaitable[object]:
    from ._handwritten import hand_tasks

    return hand_tasks.cycle(reactor, count)


def _stack_fanout(reactor: Any, count: int) -> Awaitable[object]:
    from ._shape_cleanconn import stack_fanout

    return stack_fanout(reactor, count)


def _hand_task_fanout(reactor: Any, count: int) -> Awaitable[object]:
    from ._handwritten import hand_tasks

    return hand_tasks.fanout(reactor, count, _nothing)


def _many(reactor: Any, count: int) -> Awaitable[object]:
    from . import _cleanconn

    return _cleanconn.fanout(reactor, count, _nothing)


def _hand_fanout(reactor: Any, count: int) -> Awaitable[object]:
    from ._handwritten import handwritten

    return handwritten.fanout(reactor, count, _nothing)


def _enter_scope(reactor: Any, count: int) -> Awaitable[object]:
    from ._shape_cleanconn import setup_cycles

    return setup_cycles(reactor, count)


def _hand_setup(reactor: Any, count: int) -> Awaitable[object]:
    from ._shape_hand import setup_cycles

    return setup_cycles(reactor, count)


def _tls(reactor: Any, count: int) -> Awaitable[object]:
    from ._shape_cleanconn import tls_cycles

    return tls_cycles(reactor, count, shared_ca())


def _hand_tls(reactor: Any, count: int) -> Awaitable[object]:
    from ._shape_hand import tls_cycles

    return tls_cycles(reactor, count, shared_ca())


def _http(reactor: Any, count: int) -> Awaitable[object]:
    from ._shape_cleanconn import http_cycles

    return http_cycles(reactor, count)


def _hand_http(reactor: Any, count: int) -> Awaitable[object]:
    from ._shape_hand import http_cycles

    return http_cycles(reactor, count)


def _deadline(reactor: Any, count: int) -> Awaitable[object]:
    from ._shape_cleanconn import deadline_cycles

    return deadline_cycles(reactor, count)


def _no_deadline(reactor: Any, count: int) -> Awaitable[object]:
    from ._shape_cleanconn import plain_cycles

    return plain_cycles(reactor, count)


def _stream(reactor: Any, count: int) -> Awaitable[object]:
    from ._shape_cleanconn import stream_cycles

    return stream_cycles(reactor, count)


def _proxied(reactor: Any, count: int) -> Awaitable[object]:
    from ._shape_cleanconn import proxied_cycles

    return proxied_cycles(reactor, count)


def _nothing() -> None:
    pass


SHAPES: dict[str, Shape] = {
    "cycle": Shape(
        "cycle, nested `async with`, the client a protocol of its own",
        "cycle",
        (20, 120),
        400,
        10,
        0.97,
        {"cleanconn": _readme_cycle, HAND: _hand_cycle},
    ),
    "stack-cycle": Shape(
        "cycle, the client in its own task through an `AsyncExitStack`",
        "cycle",
        (20, 120),
        400,
        10,
        1.0,
        {"cleanconn": _stack_cycle, HAND: _hand_task_cycle},
    ),
    "setup": Shape(
        "a test: `enter_scope()` twice in `setUp`, echo, cleanups",
        "test",
        (20, 120),
        400,
        10,
        1.0,
        {"cleanconn": _enter_scope, HAND: _hand_setup},
    ),
    "stack-fanout": Shape(
        "fan-out, one `connected()` per client, each in its own task",
        "client",
        (100, 300),
        1000,
        50,
        1.0,
        {"cleanconn": _stack_fanout, HAND: _hand_task_fanout},
    ),
    "many": Shape(
        "fan-out, `connected_many()`",
        "client",
        (100, 300),
        1000,
        50,
        1.0,
        {"cleanconn": _many, HAND: _hand_fanout},
    ),
    "tls": Shape(
        "TLS cycle, handshake waited for on both sides",
        "cycle",
        (10, 40),
        100,
        5,
        1.0,
        {"cleanconn": _tls, HAND: _hand_tls},
    ),
    "http": Shape(
        "HTTP cycle: serve a `Site`, GET, read the body",
        "request",
        (10, 50),
        200,
        5,
        1.0,
        {"cleanconn": _http, HAND: _hand_http},
    ),
    "deadline": Shape(
        "the protocol cycle under `@deadline(60)`, which does not fire (the "
        "hand-written column: the same cycle without it)",
        "cycle",
        (20, 120),
        400,
        10,
        1.03,
        {"cleanconn": _deadline, HAND: _no_deadline},
    ),
    "stream": Shape(
        "cycle with a stream client, as in the README (`connected(port)`, "
        "`write()`, `readexactly()`; the hand-written column: the same cycle "
        "with a client protocol of its own, as cleanconn writes it)",
        "cycle",
        (20, 120),
        400,
        10,
        1.10,
        {"cleanconn": _stream, HAND: _no_deadline},
    ),
    "proxied": Shape(
        "the protocol cycle through `proxied()` with no fault (the "
        "hand-written column: the same cycle, direct)",
        "cycle",
        (20, 120),
        400,
        10,
        2.0,
        {"cleanconn": _proxied, HAND: _no_deadline},
    ),
}
