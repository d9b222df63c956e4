# mypy: disallow-untyped-decorators=False
"""
Child processes under the plugin: each test here runs inside
``clean_reactor()``, so a child left unreaped, or one of its pipes left
open, fails it.
"""

from __future__ import annotations

import sys

import pytest_twisted  # type: ignore[import-untyped]

from cleanconn import connected, printed, spawned

#: Says its port, then answers each connection's first line in capitals.
SERVER = r"""
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
print("port", s.getsockname()[1], flush=True)
while True:
    c, _ = s.accept()
    c.sendall(c.makefile("rb").readline().upper()); c.close()
"""


@pytest_twisted.ensureDeferred
async def test_child_server() -> None:
    """A child server, ready by its log line, answers a stream client; the
    exit stops and reaps it, leaving nothing for the plugin to find."""
    ready = printed(r"port (?P<port>\d+)")
    async with spawned([sys.executable, "-c", SERVER], ready=ready) as child:
        async with connected(child.endpoint) as stream:
            stream.write(b"hi\n")
            assert await stream.readline() == b"HI\n"
    assert child.returncode == -15


@pytest_twisted.ensureDeferred
async def test_command_output() -> None:
    """A command's whole output, read to its end, and its return code."""
    async with spawned([sys.executable, "-c", "print('a'); print('b')"]) as child:
        assert await child.stdout.read() == b"a\nb\n"
        assert await child.wait() == 0
