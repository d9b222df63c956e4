"""
Real programs in child processes, as a trial test module:
``trial examples/test_process.py``.

``spawned()`` starts a program, runs the block once the program is ready,
and at the exit stops it, reaps it and waits until its pipes are closed:

- ``WebTests`` runs Twisted's own web server (``python -m twisted web``, the
  ``twist`` runner; ``twistd -n web`` prints the same line) on a free port,
  read from its log line, and fetches a file from it with treq;
- ``LineServerTests`` runs a server script (``examples/line_server.py``)
  and talks to it through a stream;
- ``CommandTests`` runs a command-line program, writing its stdin and
  reading its stdout.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

from twisted.python.filepath import FilePath

from cleanconn import (
    ProcessNotReady,
    TestCase,
    connected,
    http_client,
    printed,
    serving,
    spawned,
)

LINE_SERVER = [sys.executable, str(Path(__file__).with_name("line_server.py"))]
LISTENING = printed(r"line server on (?P<host>[\d.]+):(?P<port>\d+)")


def web_server(root: FilePath[str]) -> list[str]:
    """Twisted's web server, serving the files in ``root`` on a free port."""
    twist = [sys.executable, "-m", "twisted", "--log-format=text"]
    return [*twist, "web", "--listen", "tcp:0:interface=127.0.0.1", "--path", root.path]


class WebTests(TestCase):
    timeout = 30  # a deadline for each test

    async def test_serves_a_file(self) -> None:
        """The web server started in a child serves a file, and logs the request."""
        root = FilePath(self.mktemp())
        root.makedirs()
        root.child("hello.txt").setContent(b"hello from a child\n")
        ready = printed(r"Site starting on (?P<port>\d+)")
        async with spawned(web_server(root), ready=ready) as child:
            async with http_client() as client:
                response = await client.get(child.url + "hello.txt")
                self.assertEqual(response.code, 200)
                self.assertEqual(await response.content(), b"hello from a child\n")
            await child.stdout.readuntil(b'"GET /hello.txt HTTP/1.1" ')
            self.assertEqual((await child.stdout.readline())[:4], b"200 ")
        # It shut down on SIGTERM, then ended itself with that signal, as
        # twist and twistd do to report it.
        self.assertEqual(child.returncode, -signal.SIGTERM)


class LineServerTests(TestCase):
    timeout = 30

    async def test_answers_each_line(self) -> None:
        """The script answers each line, in capitals, on the port it printed."""
        async with spawned(LINE_SERVER, ready=LISTENING) as child:
            async with connected(child.endpoint) as stream:
                stream.write(b"hello\nworld\n")
                self.assertEqual(await stream.readline(), b"HELLO\n")
                self.assertEqual(await stream.readline(), b"WORLD\n")

    async def test_logs_connections_on_stderr(self) -> None:
        """The script logs each connection on stderr, with the client's port."""
        async with spawned(LINE_SERVER, ready=LISTENING) as child:
            async with connected(child.endpoint) as stream:
                port = stream.transport.getHost().port
                line = await child.stderr.readline()
                self.assertEqual(line, b"connection from 127.0.0.1:%d\n" % port)

    async def test_port_in_use(self) -> None:
        """A script that cannot listen fails the entry, with its status and output."""
        async with serving() as taken:
            argv = [*LINE_SERVER, str(taken.getHost().port)]
            with self.assertRaises(ProcessNotReady) as caught:
                async with spawned(argv, ready=LISTENING):
                    self.fail("the block ran")
        self.assertEqual(caught.exception.returncode, 1)
        self.assertIn("Address already in use", caught.exception.output[-1])


class CommandTests(TestCase):
    timeout = 30

    async def test_sort_reads_its_input(self) -> None:
        """sort reads stdin to its end, then prints the lines sorted and exits 0."""
        async with spawned(["sort"]) as child:
            child.stdin.write(b"pear\napple\nfig\n")
            child.stdin.close()  # sort sees the end of its input
            self.assertEqual(await child.stdout.read(), b"apple\nfig\npear\n")
            self.assertEqual(await child.wait(), 0)
