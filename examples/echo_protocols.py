"""The protocols the echo examples exercise: a server and a client."""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol


class Echo(Protocol):
    """The server under test: it sends back whatever it receives."""

    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)


class Collector(Protocol):
    """A test client: ``await proto.read(n)`` returns the first n bytes."""

    def __init__(self) -> None:
        self.buffer = b""
        self._want = 0
        self._waiting: Deferred[bytes] | None = None

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        if self._waiting is not None and len(self.buffer) >= self._want:
            waiting, self._waiting = self._waiting, None
            waiting.callback(self.buffer[: self._want])

    def read(self, count: int) -> Deferred[bytes]:
        self._want = count
        self._waiting = Deferred()
        if len(self.buffer) >= count:
            self.dataReceived(b"")
        return self._waiting
