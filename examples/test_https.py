"""
HTTPS end to end: the greeting API of ``http_app.py`` served over TLS, and
called with treq with certificate verification on.
"""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from cleanconn import base_url, http_client, serving

from .http_app import make_site


class HTTPSTests(TestCase):
    async def test_greets_over_https(self) -> None:
        """The client trusts exactly the port's throwaway CA."""
        async with (
            serving(make_site(), tls=True) as port,
            http_client(port) as client,
        ):
            url = base_url(port) + "greet"
            self.assertTrue(url.startswith("https://127.0.0.1:"))
            response = await client.post(url, json={"name": "Ada"})
            self.assertEqual(response.code, 200)
            self.assertEqual(await response.json(), {"greeting": "Hello, Ada!"})
