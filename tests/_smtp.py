"""A real ESMTP server (twisted.mail) that keeps what it was sent."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.mail import smtp
from zope.interface import implementer


@implementer(smtp.IMessage)
class _Message:
    def __init__(self, box: list[bytes]) -> None:
        self._box = box
        self._lines: list[bytes] = []

    def lineReceived(self, line: bytes) -> None:
        self._lines.append(line)

    def eomReceived(self) -> defer.Deferred[None]:
        self._box.append(b"\n".join(self._lines))
        return defer.succeed(None)

    def connectionLost(self) -> None:
        pass


@implementer(smtp.IMessageDelivery)
class _Delivery:
    def __init__(self, box: list[bytes]) -> None:
        self._box = box

    def receivedHeader(self, helo: Any, origin: Any, recipients: Any) -> bytes:
        return b"Received: by the test"

    def validateFrom(self, helo: Any, origin: Any) -> Any:
        return origin

    def validateTo(self, user: Any) -> Any:
        return lambda: _Message(self._box)


class MailServer(smtp.SMTPFactory):
    """An ESMTP server factory; each message received goes into ``box``."""

    protocol = smtp.ESMTP

    def __init__(self) -> None:
        super().__init__()
        self.box: list[bytes] = []
        self.delivery = _Delivery(self.box)

    def buildProtocol(self, addr: Any) -> Any:
        proto = super().buildProtocol(addr)
        proto.delivery = self.delivery
        return proto
