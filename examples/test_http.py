"""
The HTTP example as a trial test module: ``trial examples/test_http.py``.

A real ``twisted.web`` Site listens on loopback and treq talks to it over
keep-alive connections. When each block ends, the listener has stopped and
every connection treq opened is closed on both sides: the reactor is clean,
with no ``persistent=False`` and no pool to close by hand.
"""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from cleanconn import base_url, http_client, serving

from .http_app import make_site


class GreetTests(TestCase):
    async def test_greets_by_name(self) -> None:
        """A JSON name gets a 200, a JSON greeting and the greeting count."""
        async with serving(make_site()) as port, http_client(port) as client:
            response = await client.post(base_url(port) + "greet", json={"name": "Ada"})
            self.assertEqual(response.code, 200)
            self.assertEqual(await response.json(), {"greeting": "Hello, Ada!"})
            self.assertEqual(response.headers.getRawHeaders("X-Greeting-Count"), ["1"])

    async def test_counts_greetings(self) -> None:
        """Each greeting over the same client counts one more."""
        async with serving(make_site()) as port, http_client(port) as client:
            for expected in ("1", "2", "3"):
                response = await client.post(
                    base_url(port) + "greet", json={"name": "Bo"}
                )
                await response.json()
                self.assertEqual(
                    response.headers.getRawHeaders("X-Greeting-Count"), [expected]
                )

    async def test_rejects_a_body_without_a_name(self) -> None:
        """A body without a name gets a 400 and a JSON error."""
        async with serving(make_site()) as port, http_client(port) as client:
            response = await client.post(base_url(port) + "greet", json={"nom": "Ada"})
            self.assertEqual(response.code, 400)
            self.assertIn("error", await response.json())

    async def test_body_left_unread(self) -> None:
        """A response whose body the test never reads is still cleaned up."""
        async with serving(make_site()) as port, http_client(port) as client:
            response = await client.post(base_url(port) + "greet", json={"name": "Cy"})
            self.assertEqual(response.code, 200)
