"""
The echo example as a script: ``python examples/echo_react.py``.

``task.react`` runs the reactor for the length of ``main``; cleanconn's scopes
make sure nothing is left running when it returns. Exits non-zero when a
check fails.
"""

from __future__ import annotations

import sys
from pathlib import Path

from twisted.internet import task
from twisted.internet.defer import ensureDeferred
from twisted.internet.protocol import Factory

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cleanconn import connected, serving
from examples.echo_protocols import Collector, Echo


async def main(reactor: object) -> None:
    async with serving(Factory.forProtocol(Echo)) as port:
        print(f"listening on {port.getHost().host}:{port.getHost().port}")
        async with connected(port, Factory.forProtocol(Collector)) as client:
            client.transport.write(b"ping")
            answer = await client.read(4)
            if answer != b"ping":
                raise SystemExit(f"FAILED: echo answered {answer!r}")
            print(f"checked: echo answered {answer!r}")
    leftovers = [
        s
        for s in reactor.getReaders() + reactor.getWriters()
        if "Waker" not in type(s).__name__
    ]
    if leftovers or reactor.getDelayedCalls():
        raise SystemExit(f"FAILED: left on the reactor: {leftovers}")
    print("checked: listener stopped, both connections lost, reactor clean")


if __name__ == "__main__":
    task.react(lambda reactor: ensureDeferred(main(reactor)))
