"""
setUp-style tests: ``trial examples/test_setup_style.py``.

"How to Disconnect in Twisted, Really" (Jonathan Lange) builds its server
and client in ``setUp`` and tears them down in ``tearDown``: two protocols
and two factories that fire Deferreds, a ``tearDown`` that stops listening,
disconnects, and waits on three Deferreds (``test_by_hand.py`` has that
pattern written out). With :func:`cleanconn.enter_scope` the same structure
is the two lines of ``setUp`` below. There is no ``tearDown``: each scope's
exit runs as a cleanup when the test ends, pass or fail, the client's
before the server's, and each one is waited for.
"""

from __future__ import annotations

from twisted.internet.protocol import Factory
from twisted.trial.unittest import TestCase

from cleanconn import base_url, connected, enter_scope, http_client, serving

from .echo_protocols import Collector, Echo
from .http_app import make_site


class DisconnectTests(TestCase):
    """The article's test case: listen and connect in setUp."""

    async def setUp(self) -> None:  # type: ignore[override]
        port = await enter_scope(self, serving(Factory.forProtocol(Echo)))
        self.client = await enter_scope(
            self, connected(port, Factory.forProtocol(Collector))
        )

    def test_disconnect(self) -> None:
        """The article's test: connecting and disconnecting is the test."""

    async def test_echo(self) -> None:
        """The connection made in setUp is live in the test."""
        self.client.transport.write(b"hi")
        self.assertEqual(await self.client.read(2), b"hi")


class GreetSetUpTests(TestCase):
    """The same structure for HTTP: a Site and a treq client in setUp."""

    async def setUp(self) -> None:  # type: ignore[override]
        port = await enter_scope(self, serving(make_site()))
        self.client = await enter_scope(self, http_client(port))
        self.url = base_url(port) + "greet"

    async def test_greets(self) -> None:
        """The client made in setUp reaches the Site made in setUp."""
        response = await self.client.post(self.url, json={"name": "Ada"})
        self.assertEqual(await response.json(), {"greeting": "Hello, Ada!"})
