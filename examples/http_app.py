"""
The web application the HTTP examples test: a tiny JSON greeting API.

``POST /greet`` with ``{"name": "Ada"}`` answers ``200`` and
``{"greeting": "Hello, Ada!"}``, with the header ``X-Greeting-Count``
counting the greetings given so far. A body that is not a JSON object with
a non-empty string ``name`` answers ``400`` and ``{"error": "..."}``.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.web.resource import Resource
from twisted.web.server import Request, Site


class Greet(Resource):
    """``POST /greet``: JSON in, JSON out."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def render_POST(self, request: Request) -> bytes:
        request.setHeader(b"Content-Type", b"application/json")
        try:
            body: Any = json.loads(request.content.read())
        except ValueError:
            body = None
        name = body.get("name") if isinstance(body, dict) else None
        if not isinstance(name, str) or not name:
            request.setResponseCode(400)
            return _json({"error": 'send a JSON object with a "name" string'})
        self.count += 1
        request.setHeader(b"X-Greeting-Count", str(self.count).encode("ascii"))
        return _json({"greeting": f"Hello, {name}!"})


def _json(value: object) -> bytes:
    return json.dumps(value).encode("utf-8")


def make_site() -> Site:
    """The application: ``/greet`` under a root with nothing else."""
    root = Resource()
    root.putChild(b"greet", Greet())
    return Site(root)
