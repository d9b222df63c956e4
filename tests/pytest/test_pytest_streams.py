# mypy: disallow-untyped-decorators=False
"""
Streams and connections other code opens, under the plugin: each test here
runs inside ``clean_reactor()``, so anything left open fails it.
"""

from __future__ import annotations

from typing import Any

import pytest_twisted  # type: ignore[import-untyped]
from twisted.internet import defer
from twisted.internet.protocol import Factory
from twisted.mail import smtp
from twisted.protocols.basic import LineReceiver
from zope.interface import implementer

from cleanconn import connected, serving


class Upper(LineReceiver):
    def lineReceived(self, line: bytes) -> None:
        self.sendLine(line.upper())


@pytest_twisted.ensureDeferred
async def test_stream_client() -> None:
    """A stream client reads a LineReceiver's reply, with nothing left after."""
    async with serving(Factory.forProtocol(Upper)) as port, connected(port) as stream:
        stream.write(b"hi\r\n")
        assert await stream.readline() == b"HI\r\n"


@implementer(smtp.IMessage)
class _Message:
    def __init__(self, box: list[bytes]) -> None:
        self.box = box
        self.lines: list[bytes] = []

    def lineReceived(self, line: bytes) -> None:
        self.lines.append(line)

    def eomReceived(self) -> defer.Deferred[None]:
        self.box.append(b"\n".join(self.lines))
        return defer.succeed(None)

    def connectionLost(self) -> None:
        pass


@implementer(smtp.IMessageDelivery)
class _Delivery:
    def __init__(self, box: list[bytes]) -> None:
        self.box = box

    def receivedHeader(self, helo: Any, origin: Any, recipients: Any) -> bytes:
        return b"Received: by the test"

    def validateFrom(self, helo: Any, origin: Any) -> Any:
        return origin

    def validateTo(self, user: Any) -> Any:
        return lambda: _Message(self.box)


class MailServer(smtp.SMTPFactory):
    protocol = smtp.ESMTP

    def __init__(self) -> None:
        super().__init__()
        self.box: list[bytes] = []
        self.delivery = _Delivery(self.box)

    def buildProtocol(self, addr: Any) -> Any:
        proto = super().buildProtocol(addr)
        proto.delivery = self.delivery
        return proto


@pytest_twisted.ensureDeferred
async def test_smtp_sendmail() -> None:
    """smtp.sendmail() to a serving() ESMTP server passes with no extra code."""
    server = MailServer()
    async with serving(server) as port:
        await smtp.sendmail(
            "127.0.0.1",
            "alice@example.com",
            ["bob@example.com"],
            b"Subject: hi\r\n\r\nhello\r\n",
            port=port.getHost().port,
        )
    assert len(server.box) == 1
