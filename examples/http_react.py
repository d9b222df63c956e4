"""
The HTTP example as a script: ``python examples/http_react.py``.

It serves the greeting API of ``http_app.py`` on loopback, calls it with
treq over keep-alive, prints each check, and exits non-zero if one fails.
When ``main`` returns, the listener, every connection and the pool's
timers are gone: the script checks that too.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from twisted.internet import task
from twisted.internet.defer import ensureDeferred

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cleanconn import base_url, http_client, serving
from examples.http_app import make_site


def check(what: str, ok: bool, got: object) -> None:
    if not ok:
        raise SystemExit(f"FAILED: {what}: got {got!r}")
    print(f"checked: {what}")


async def main(reactor: Any) -> None:
    async with serving(make_site()) as port, http_client(port) as client:
        url = base_url(port) + "greet"
        print(f"serving {url}")
        response = await client.post(url, json={"name": "Ada"})
        body = await response.json()
        check("POST /greet answers 200", response.code == 200, response.code)
        check("the greeting is JSON", body == {"greeting": "Hello, Ada!"}, body)
        count = response.headers.getRawHeaders("X-Greeting-Count")
        check("X-Greeting-Count is 1", count == ["1"], count)
        response = await client.post(url, json={"nom": "Ada"})
        body = await response.json()
        check("a body without a name answers 400", response.code == 400, response.code)
        check("with a JSON error", "error" in body, body)
    leftovers = [
        s
        for s in reactor.getReaders() + reactor.getWriters()
        if "Waker" not in type(s).__name__
    ]
    timers = reactor.getDelayedCalls()
    check("listener and every connection closed", not leftovers, leftovers)
    check("no timer left (pool, server)", not timers, timers)


if __name__ == "__main__":
    task.react(lambda reactor: ensureDeferred(main(reactor)))
