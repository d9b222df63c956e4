"""
A small line server, run as a program of its own: the kind of server script
that ``examples/test_process.py`` tests from the outside.

    python examples/line_server.py [PORT]

It listens on 127.0.0.1 (on PORT, or on a free port when PORT is 0 or
missing), prints ``line server on 127.0.0.1:PORT`` once it listens, and
answers each line it receives with the same line in capitals. It logs each
connection on stderr, and runs until SIGTERM or SIGINT. When it cannot
listen, it says why on stderr and exits with status 1.
"""

from __future__ import annotations

import sys

from twisted.internet import task
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import Factory
from twisted.protocols.basic import LineReceiver


class Upper(LineReceiver):
    delimiter = b"\n"

    def connectionMade(self) -> None:
        peer = self.transport.getPeer()
        print(f"connection from {peer.host}:{peer.port}", file=sys.stderr, flush=True)

    def lineReceived(self, line: bytes) -> None:
        self.sendLine(line.upper())


async def main(reactor: object) -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    endpoint = TCP4ServerEndpoint(reactor, port, interface="127.0.0.1")
    try:
        listening = await endpoint.listen(Factory.forProtocol(Upper))
    except CannotListenError as e:
        print(f"line server: cannot listen: {e}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    address = listening.getHost()
    print(f"line server on {address.host}:{address.port}", flush=True)
    await Deferred()  # serve until a signal stops the reactor


if __name__ == "__main__":
    task.react(lambda reactor: ensureDeferred(main(reactor)))
