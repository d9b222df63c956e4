# mypy: disallow-untyped-decorators=False
"""
Streams and connections other code opens, under the plugin: each test here
runs inside ``clean_reactor()``, so anything left open fails it.
"""

from __future__ import annotations

import pytest_twisted  # type: ignore[import-untyped]
from twisted.internet.protocol import Factory
from twisted.mail import smtp
from twisted.protocols.basic import LineReceiver

from cleanconn import connected, serving
from tests._smtp import MailServer


class Upper(LineReceiver):
    def lineReceived(self, line: bytes) -> None:
        self.sendLine(line.upper())


@pytest_twisted.ensureDeferred
async def test_stream_client() -> None:
    """A stream client reads a LineReceiver's reply, with nothing left after."""
    async with serving(Factory.forProtocol(Upper)) as port, connected(port) as stream:
        stream.write(b"hi\r\n")
        assert await stream.readline() == b"HI\r\n"


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
