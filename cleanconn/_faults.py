"""
Faults a :func:`~cleanconn.proxied` connection meets on its way: what each
does to the bytes of one direction, and when they arrive.

A fault sees each chunk the proxy reads as a list of pieces, each with the
delay after which it is delivered, and returns the pieces to deliver: it
may delay them, split them, drop them, or end the direction (close or
reset) after some bytes. Faults apply in the order they were added; the
proxy delivers what they return in order, never sooner than a piece before.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._proxy import Pipe

#: A piece of a chunk: after how many seconds (from now), and its bytes.
Piece = tuple[float, bytes]

#: What a fault can end a direction with, after the pieces before it.
CLOSE = "close"
RESET = "reset"


class Fault:
    """
    Something a proxied connection meets on its way, in one direction: made
    by :func:`latency`, :func:`bandwidth`, :func:`slicer`,
    :func:`stop_reading`, :func:`blackhole`, :func:`reset_peer`,
    :func:`limit_data` or :func:`slow_close`, and given to
    :func:`~cleanconn.proxied` or added to a :class:`~cleanconn.Direction`
    inside the block.
    """

    #: The fault's name in messages, such as ``"latency(0.05)"``.
    name = "fault"

    def __repr__(self) -> str:
        return f"<cleanconn fault {self.name}>"

    def pieces(
        self, pipe: Pipe, pieces: list[Piece], rng: random.Random
    ) -> list[Piece]:
        """The pieces to deliver, for the pieces of one chunk."""
        return pieces

    def started(self, pipe: Pipe) -> None:
        """Now acting on ``pipe`` (added, or its connection made)."""

    def stopped(self, pipe: Pipe) -> None:
        """No longer acting on ``pipe`` (removed)."""

    def end_delay(self) -> float:
        """Seconds to hold back the end of the direction (a close or reset)."""
        return 0.0


class _Latency(Fault):
    def __init__(self, seconds: float, jitter: float) -> None:
        self.seconds = seconds
        self.jitter = jitter
        self.name = (
            f"latency({seconds}, jitter={jitter})" if jitter else f"latency({seconds})"
        )

    def pieces(
        self, pipe: Pipe, pieces: list[Piece], rng: random.Random
    ) -> list[Piece]:
        seconds, jitter = self.seconds, self.jitter
        out = []
        for delay, data in pieces:
            extra = seconds + (rng.uniform(-jitter, jitter) if jitter else 0.0)
            out.append((delay + max(extra, 0.0), data))
        return out


class _Bandwidth(Fault):
    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.name = f"bandwidth({rate:g} bytes/s)"

    def pieces(
        self, pipe: Pipe, pieces: list[Piece], rng: random.Random
    ) -> list[Piece]:
        now = pipe.now()
        state = pipe.state
        free = max(state.get(self, now), now)
        out = []
        for delay, data in pieces:
            at = max(now + delay, free)
            free = at + len(data) / self.rate
            out.append((free - now, data))
        state[self] = free
        return out


class _Slicer(Fault):
    def __init__(self, size: int, variation: int, delay: float) -> None:
        self.size = size
        self.variation = variation
        self.delay = delay
        self.name = (
            f"slicer({size}"
            + (f", variation={variation}" if variation else "")
            + (f", delay={delay}" if delay else "")
            + ")"
        )

    def pieces(
        self, pipe: Pipe, pieces: list[Piece], rng: random.Random
    ) -> list[Piece]:
        size, variation, gap = self.size, self.variation, self.delay
        out = []
        now = pipe.now()
        # The pieces stay ``gap`` apart across chunks too.
        free = pipe.state.get(self, now) - now
        for delay, data in pieces:
            at = max(delay, free)
            start = 0
            while start < len(data):
                n = size + (rng.randint(-variation, variation) if variation else 0)
                n = max(n, 1)
                out.append((at, data[start : start + n]))
                start += n
                at += gap
            free = at
        pipe.state[self] = now + free
        return out


class _StopReading(Fault):
    name = "stop_reading()"

    def started(self, pipe: Pipe) -> None:
        pipe.hold(self)

    def stopped(self, pipe: Pipe) -> None:
        pipe.release(self)


class _Blackhole(Fault):
    name = "blackhole()"

    def pieces(
        self, pipe: Pipe, pieces: list[Piece], rng: random.Random
    ) -> list[Piece]:
        return []


class _Ending(Fault):
    """Passes ``after`` bytes in all, then ends the direction (``how``)."""

    def __init__(self, after: int, how: str, name: str) -> None:
        self.after = after
        self.how = how
        self.name = name

    def started(self, pipe: Pipe) -> None:
        if self.after == 0:
            pipe.end_by_fault(self.how, 0.0, at_once=True)

    def pieces(
        self, pipe: Pipe, pieces: list[Piece], rng: random.Random
    ) -> list[Piece]:
        state = pipe.state
        passed: int = state.get(self, 0)
        left = self.after - passed
        if left <= 0:
            return []
        out = []
        for delay, data in pieces:
            if len(data) >= left:
                out.append((delay, data[:left]))
                state[self] = self.after
                pipe.end_by_fault(self.how, delay)
                return out
            out.append((delay, data))
            left -= len(data)
        state[self] = self.after - left
        return out


class _SlowClose(Fault):
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.name = f"slow_close({seconds})"

    def end_delay(self) -> float:
        return self.seconds


def _seconds(value: object, where: str, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{where}: {what} must be a number of seconds, got {value!r}")
    if not 0 <= value < float("inf"):
        raise ValueError(f"{where}: {what} must be finite and 0 or more, got {value!r}")
    return float(value)


def _count(value: object, where: str, what: str, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{where}: {what} must be an int, got {value!r}")
    if value < least:
        raise ValueError(f"{where}: {what} must be {least} or more, got {value!r}")
    return value


def latency(seconds: float, *, jitter: float = 0.0) -> Fault:
    """
    Delay every chunk by ``seconds``, plus or minus up to ``jitter``
    (uniform, from the proxy's seeded random numbers). Order is kept.
    """
    seconds = _seconds(seconds, "latency()", "seconds")
    jitter = _seconds(jitter, "latency()", "jitter")
    return _Latency(seconds, jitter)


def bandwidth(rate: float) -> Fault:
    """Deliver at most ``rate`` bytes a second (what is read waits its turn)."""
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate > 0:
        raise ValueError(
            f"bandwidth(): rate must be bytes per second, more than 0, got {rate!r}"
        )
    return _Bandwidth(float(rate))


def slicer(size: int = 1, *, variation: int = 0, delay: float = 0.0) -> Fault:
    """
    Split every chunk into pieces of ``size`` bytes (plus or minus up to
    ``variation``, seeded), each delivered as its own write, ``delay``
    seconds apart: the receiver's ``dataReceived`` sees the stream cut
    anywhere, as a real network may cut it.
    """
    size = _count(size, "slicer()", "size", 1)
    variation = _count(variation, "slicer()", "variation", 0)
    if variation >= size:
        raise ValueError(
            f"slicer(): variation must be less than size ({size}), got {variation}"
        )
    return _Slicer(size, variation, _seconds(delay, "slicer()", "delay"))


def stop_reading() -> Fault:
    """
    Stop reading from the sender, as a peer that stops reading does: what
    it writes stays in its buffers (then the kernel's), until the fault is
    removed.
    """
    return _StopReading()


def blackhole() -> Fault:
    """Read everything and deliver nothing (the connection stays open)."""
    return _Blackhole()


def reset_peer(*, after: int = 0) -> Fault:
    """
    Reset both legs of the connection (an RST, seen as ``ConnectionLost``)
    once ``after`` bytes went through in this direction; with ``after=0``,
    at once (for a connection made later, as soon as it is made).
    """
    after = _count(after, "reset_peer()", "after", 0)
    return _Ending(after, RESET, f"reset_peer(after={after})")


def limit_data(limit: int) -> Fault:
    """Deliver ``limit`` bytes in this direction, then close the connection."""
    limit = _count(limit, "limit_data()", "limit", 0)
    return _Ending(limit, CLOSE, f"limit_data({limit})")


def slow_close(seconds: float) -> Fault:
    """Hold back the close (or reset) of this direction by ``seconds``."""
    return _SlowClose(_seconds(seconds, "slow_close()", "seconds"))


def _check_fault(fault: Any, where: str) -> Fault:
    if not isinstance(fault, Fault):
        raise TypeError(
            f"{where} takes faults such as cleanconn.latency(0.05) or "
            f"cleanconn.slicer(1), got {fault!r}"
        )
    return fault
