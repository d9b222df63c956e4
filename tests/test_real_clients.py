"""
serving() under clients nobody here wrote: curl and ``openssl s_client``,
each with its default options, against real servers over loopback TLS.

Skipped where the program is not installed.
"""

from __future__ import annotations

import shutil
import tempfile
from unittest import SkipTest

from twisted.internet.protocol import Factory, Protocol
from twisted.internet.utils import getProcessOutputAndValue
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from cleanconn import base_url, serving

from ._helpers import TestCase


class Hello(Resource):
    """Answers every GET with ``hello``."""

    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        return b"hello"


class ReplyAndClose(Protocol):
    """Echoes what it receives, then closes: a client knows when it is over."""

    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)
        self.transport.loseConnection()


def _program(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise SkipTest(f"{name} is not installed")
    return path


class RealClientTests(TestCase):
    def setUp(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="cleanconn-test-")
        self.addCleanup(shutil.rmtree, self.directory, True)

    async def test_curl_with_default_options_over_tls(self) -> None:
        """curl, offering ALPN as it does by default, gets the page over TLS:
        the wrapping factory passes the Site's ALPN protocols through."""
        curl = _program("curl")
        async with serving(Site(Hello()), tls=True) as port:
            assert port.tls is not None
            paths = port.tls.write(self.directory)
            out, err, code = await getProcessOutputAndValue(
                curl,
                ["--silent", "--show-error", "--cacert", str(paths["ca"]),
                 base_url(port)],
            )  # fmt: skip
        self.assertEqual((code, out), (0, b"hello"), err.decode(errors="replace"))

    async def test_openssl_s_client_verifies_and_echoes(self) -> None:
        """openssl s_client verifies the throwaway CA and gets its line echoed."""
        openssl = _program("openssl")
        async with serving(Factory.forProtocol(ReplyAndClose), tls=True) as port:
            assert port.tls is not None
            paths = port.tls.write(self.directory)
            address = port.getHost()
            out, err, code = await getProcessOutputAndValue(
                openssl,
                ["s_client", "-connect", f"127.0.0.1:{address.port}",
                 "-CAfile", str(paths["ca"]), "-verify_return_error",
                 "-verify_ip", "127.0.0.1", "-quiet"],
                stdinBytes=b"ping\n",
            )  # fmt: skip
        self.assertEqual(code, 0, err.decode(errors="replace"))
        self.assertIn(b"ping\n", out)
