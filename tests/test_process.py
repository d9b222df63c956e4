"""spawned(): child processes, ready before the block, and stopped, reaped and
waited for at its exit, with real programs on real pipes and sockets."""

from __future__ import annotations

import errno
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from unittest import SkipTest

from twisted.internet import defer, reactor, tcp
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater

from cleanconn import (
    ChildProcess,
    CleanupTimeout,
    DeadlineExceeded,
    ProcessFailed,
    ProcessNotReady,
    StreamClosed,
    WaitTimeout,
    accepting,
    answering,
    clean_reactor,
    connected,
    deadline,
    http_client,
    printed,
    spawned,
)
from cleanconn._process import close_pipes
from cleanconn._reactor import default_reactor
from cleanconn._teardown import ABORT_GRACE

from ._helpers import MARGIN, TestCase
from .test_transports import has_ipv6

PY = sys.executable

#: A TCP server that says its port, answers one line in capitals per
#: connection, and runs until stopped.
UPPER_SERVER = r"""
import socket, sys
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
print("serving on port", s.getsockname()[1], flush=True)
while True:
    c, _ = s.accept()
    c.sendall(c.makefile("rb").readline().upper()); c.close()
"""

#: Prints "ready", then ignores SIGTERM and sleeps.
STUBBORN = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ready', flush=True); time.sleep(120)"
)

#: Starts a grandchild that keeps stdout (inherited) open, prints its pid
#: and "ready", then waits for SIGTERM like any server.
WITH_GRANDCHILD = (
    "import subprocess, sys, time; "
    "g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
    "print('grandchild', g.pid, flush=True); print('ready', flush=True); "
    "time.sleep(120)"
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def state_of(pid: int) -> str | None:
    """The state letter of process ``pid`` in /proc, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


def gone(pid: int, within: float = 10.0) -> bool:
    """
    Whether process ``pid`` (not our child: a grandchild, reparented) has
    ended within ``within`` seconds: waited for on its pidfd, which becomes
    readable when it exits (a SIGKILL just sent takes effect a moment later).
    """
    import select

    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([fd], [], [], within)
        return bool(readable)
    finally:
        os.close(fd)


def answered(url: str) -> ChildProcess:
    """
    A child (never started) as an answering() check leaves it once ``url``
    answered: what the check calls then, called here, for URLs no test can
    serve (a privileged port, a host name other than localhost).
    """
    child = ChildProcess(("server",), default_reactor(None), 1)
    child._answered(url)
    return child


def exited(child: ChildProcess) -> defer.Deferred[None]:
    """
    Fires once ``child`` has exited (been reaped), its pipes closed or not:
    wait() waits for its pipes too. (A hook of cleanconn's own, for the one
    state that has no public event: exited, with its pipes held open.)
    """
    waiter: defer.Deferred[None] = defer.Deferred()
    if child.returncode is not None:
        waiter.callback(None)
    else:
        child._on_exit.append(lambda _: waiter.callback(None))
    return waiter


#: Says "ready", then "bye" on SIGTERM, which it does not end on.
SAYS_BYE = (
    "import signal, time\n"
    "signal.signal(signal.SIGTERM, lambda *a: print('bye', flush=True))\n"
    "print('ready', flush=True)\n"
    "time.sleep(120)\n"
)


class _Ended(ProcessProtocol):
    """A child's protocol whose ``ended`` fires at processEnded."""

    def __init__(self) -> None:
        self.ended: defer.Deferred[None] = defer.Deferred()

    def processEnded(self, reason: object) -> None:
        self.ended.callback(None)


class Base(TestCase):
    def assert_reaped(self, child: ChildProcess) -> None:
        """The child ended and was reaped: not ours to wait for, no zombie."""
        assert child.pid is not None
        self.assertTrue(child.ended)
        self.assertIsNotNone(child.returncode)
        with self.assertRaises(ChildProcessError):
            os.waitpid(child.pid, os.WNOHANG)
        self.assertNotEqual(state_of(child.pid), "Z")


class ReadinessTests(Base):
    async def test_printed_port_gives_an_address_to_connect_to(self) -> None:
        """A ``port`` group of printed() becomes an endpoint connected() takes."""
        argv = [PY, "-c", UPPER_SERVER]
        async with spawned(argv, ready=printed(r"port (?P<port>\d+)")) as child:
            assert child.match is not None
            port = int(child.match["port"])
            self.assertEqual(child.address, IPv4Address("TCP", "127.0.0.1", port))
            self.assertEqual(child.endpoint, f"tcp:host=127.0.0.1:port={port}")
            async with connected(child.endpoint) as stream:
                stream.write(b"hello\n")
                self.assertEqual(await stream.readline(), b"HELLO\n")
        self.assert_reaped(child)

    async def test_printed_line_stays_readable(self) -> None:
        """The line a printed() check matched can still be read from stdout."""
        argv = [PY, "-c", "print('first'); print('ready now', flush=True); input()"]
        async with spawned(argv, ready=printed("ready")) as child:
            self.assertEqual(await child.stdout.readline(), b"first\n")
            self.assertEqual(await child.stdout.readline(), b"ready now\n")

    async def test_lines_after_the_matched_one_reach_stdout(self) -> None:
        """Lines the child prints after the one printed() matched are read as
        usual, and nothing is left watching for them."""
        code = (
            "print('ready', flush=True); input(); print('after', flush=True); input()"
        )
        async with spawned([PY, "-c", code], ready=printed("ready")) as child:
            self.assertEqual(await child.stdout.readline(), b"ready\n")
            child.stdin.write(b"\n")
            self.assertEqual(await child.stdout.readline(), b"after\n")

    async def test_no_line_watched_after_printed_gave_up(self) -> None:
        """A printed() check that gave up watches no more lines: what the
        child prints as it is stopped is read without error."""
        code = (
            "import signal, sys\n"
            "def bye(*_): print('bye', flush=True); sys.exit(0)\n"
            "signal.signal(signal.SIGTERM, bye)\n"
            "print('started', flush=True)\n"
            "sys.stdin.read()\n"
        )
        with self.assertRaises(ProcessNotReady):
            async with spawned([PY, "-c", code], ready=printed("never"), timeout=1):
                self.fail("ready without the line")  # pragma: no cover
        self.assertEqual(self.flushLoggedErrors(), [])

    async def test_printed_line_is_there_when_the_block_starts(self) -> None:
        """The block starts with the line printed() matched already in
        stdout: a read of it completes at once."""
        code = "import sys; print('ready', flush=True); sys.stdin.read()"
        async with spawned([PY, "-c", code], ready=printed("ready")) as child:
            self.assertEqual(self.successResultOf(child.stdout.readline()), b"ready\n")

    async def test_printed_on_stderr_ignores_stdout(self) -> None:
        """printed(on="stderr") is not satisfied by the same line on stdout."""
        code = "import sys; print('go', flush=True); sys.stdin.read()"
        ready = printed("go", on="stderr")
        with self.assertRaises(ProcessNotReady) as caught:
            async with spawned([PY, "-c", code], ready=ready, timeout=2):
                self.fail("ready on a line printed on stdout")  # pragma: no cover
        self.assertEqual(caught.exception.output, ("go",))

    async def test_printed_not_ready_says_what_it_waited_for(self) -> None:
        """A printed() check that timed out names its pattern, and no last
        try (it tries nothing, it watches)."""
        code = "import sys; sys.stdin.read()"
        with self.assertRaises(ProcessNotReady) as caught:
            async with spawned([PY, "-c", code], ready=printed("up"), timeout=0.5):
                self.fail("ready without the line")  # pragma: no cover
        self.assertEqual(
            caught.exception.waiting, "a line matching 'up' on stdout or stderr"
        )

    async def test_printed_text_pattern_on_invalid_utf8(self) -> None:
        """A text pattern matches a line that is not valid UTF-8, its bad
        bytes decoded as replacement characters."""
        argv = [
            PY,
            "-c",
            "import sys; sys.stdout.buffer.write(b'\\xff ready\\n'); "
            "sys.stdout.flush(); input()",
        ]
        async with spawned(argv, ready=printed("^(.) ready$")) as child:
            assert child.match is not None
            self.assertEqual(child.match[1], "\ufffd")

    async def test_printed_bytes_pattern_gives_bytes_groups(self) -> None:
        """A bytes pattern matches the raw line; its groups are bytes."""
        argv = [
            PY,
            "-c",
            "import sys; sys.stdout.buffer.write(b'token=\\xff\\n'); "
            "sys.stdout.flush(); input()",
        ]
        async with spawned(argv, ready=printed(rb"token=(.)")) as child:
            assert child.match is not None
            self.assertEqual(child.match[1], b"\xff")

    async def test_printed_bytes_groups_give_an_address(self) -> None:
        """A bytes pattern's ``host`` and ``port`` groups give the address too."""
        argv = [PY, "-c", UPPER_SERVER.replace("on port", "at 127.0.0.1:")]
        ready = printed(rb"at (?P<host>[\d.]+): (?P<port>\d+)")
        async with spawned(argv, ready=ready) as child:
            assert child.match is not None
            port = int(child.match["port"])
            self.assertEqual(child.endpoint, f"tcp:host=127.0.0.1:port={port}")
            async with connected(child.endpoint) as stream:
                stream.write(b"bytes\n")
                self.assertEqual(await stream.readline(), b"BYTES\n")

    async def test_printed_host_group_gives_an_ipv6_address(self) -> None:
        """A ``host`` group of printed() that names an IPv6 address (here in
        a bytes pattern) gives an IPv6 endpoint."""
        if not has_ipv6():
            raise SkipTest("this machine has no IPv6 loopback")
        code = (
            "import socket, sys\n"
            "s = socket.socket(socket.AF_INET6); s.bind(('::1', 0)); s.listen()\n"
            "print('listening on ::1 port', s.getsockname()[1], flush=True)\n"
            "sys.stdin.read()\n"
        )
        ready = printed(rb"on (?P<host>\S+) port (?P<port>\d+)")
        async with spawned([PY, "-c", code], ready=ready) as child:
            assert child.match is not None
            port = int(child.match["port"])
            self.assertEqual(child.address, IPv6Address("TCP", "::1", port))
            self.assertEqual(child.endpoint, f"tcp:host=\\:\\:1:port={port}")

    async def test_printed_path_group_gives_a_unix_address(self) -> None:
        """A ``path`` group of printed() gives a UNIX address, and its endpoint."""
        code = (
            "import os, socket, sys, tempfile\n"
            "path = os.path.join(tempfile.mkdtemp(dir='/tmp'), 's')\n"
            "s = socket.socket(socket.AF_UNIX); s.bind(path); s.listen()\n"
            "print('listening at', path, flush=True)\n"
            "while True:\n"
            "    c, _ = s.accept(); c.sendall(b'hi\\n'); c.close()\n"
        )
        ready = printed(rb"at (?P<path>\S+)")
        async with spawned([PY, "-c", code], ready=ready) as child:
            assert child.match is not None
            path = child.match["path"].decode()
            self.addCleanup(os.rmdir, os.path.dirname(path))
            self.addCleanup(os.unlink, path)
            self.assertEqual(child.endpoint, f"unix:path={path}")
            async with connected(child.endpoint) as stream:
                self.assertEqual(await stream.read(), b"hi\n")

    async def test_printed_bounds_an_unfinished_line(self) -> None:
        """While printed() waits, a line without end is kept to its last
        64 KiB (and what arrives with its end): not the whole 4 MiB."""
        code = (
            "import sys; sys.stdout.write('x' * (4 << 20)); "
            "print('ready', flush=True); sys.stdin.read()"
        )
        async with spawned([PY, "-c", code], ready=printed("x*ready$")) as child:
            assert child.match is not None
            self.assertLess(len(child.match[0]), 128 * 1024)
            self.assertTrue(child.match[0].endswith("xready"))

    async def test_accepting_unix_socket(self) -> None:
        """accepting(path) waits until a UNIX socket accepts, then connects to it."""
        with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
            path = os.path.join(tmp, "s")
            code = (
                "import socket, sys, time\n"
                "time.sleep(0.2)\n"
                "s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen()\n"
                "while True:\n"
                "    c, _ = s.accept()\n"
                "    try: c.sendall(b'hi\\n')\n"
                "    except OSError: pass\n"
                "    c.close()\n"
            )
            async with spawned([PY, "-c", code, path], ready=accepting(path)) as child:
                self.assertEqual(child.endpoint, f"unix:path={path}")
                async with connected(child.endpoint) as stream:
                    self.assertEqual(await stream.read(), b"hi\n")

    async def test_accepting_host_and_port(self) -> None:
        """accepting((host, port)) waits on that host; it becomes the address."""
        port = free_port()
        code = (
            "import socket, sys; s = socket.socket(); "
            "s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(); sys.stdin.read()"
        )
        ready = accepting(("127.0.0.1", port))
        async with spawned([PY, "-c", code, str(port)], ready=ready) as child:
            self.assertEqual(child.endpoint, f"tcp:host=127.0.0.1:port={port}")

    async def test_accepting_probe_closed_when_the_block_starts(self) -> None:
        """accepting()'s probe connection is gone from the reactor when the
        block starts: the check waits for it to close."""
        port = free_port()
        code = (
            "import socket, sys; s = socket.socket(); "
            "s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(); sys.stdin.read()"
        )
        ready = accepting(("127.0.0.1", port))
        async with spawned([PY, "-c", code, str(port)], ready=ready):
            selectables = reactor.getReaders() + reactor.getWriters()
            self.assertEqual([s for s in selectables if isinstance(s, tcp.Client)], [])

    async def test_accepting_ipv6(self) -> None:
        """accepting(("::1", port)) waits on IPv6 loopback; the address and
        endpoint are IPv6 ones."""
        if not has_ipv6():
            raise SkipTest("this machine has no IPv6 loopback")
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
            port = s.getsockname()[1]
        code = (
            "import socket, sys; s = socket.socket(socket.AF_INET6); "
            "s.bind(('::1', int(sys.argv[1]))); s.listen(); sys.stdin.read()"
        )
        ready = accepting(("::1", port))
        async with spawned([PY, "-c", code, str(port)], ready=ready) as child:
            self.assertEqual(child.address, IPv6Address("TCP", "::1", port))
            self.assertEqual(child.endpoint, f"tcp:host=\\:\\:1:port={port}")
            self.assertEqual(child.url, f"http://[::1]:{port}/")

    async def test_answering_http_server(self) -> None:
        """answering(url) waits until the stdlib HTTP server answers; the
        block then gets the same answer."""
        port = free_port()
        url = f"http://127.0.0.1:{port}/"
        argv = [PY, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
        with tempfile.TemporaryDirectory() as tmp:
            async with spawned(argv, cwd=tmp, ready=answering(url)) as child:
                self.assertEqual(child.url, url)
                async with http_client() as client:
                    response = await client.get(url)
                    await response.content()
                    self.assertEqual(response.code, 200)

    async def test_answering_gives_an_address(self) -> None:
        """answering() on an IP URL also gives the address, and an endpoint."""
        port = free_port()
        url = f"http://127.0.0.1:{port}/"
        argv = [PY, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
        with tempfile.TemporaryDirectory() as tmp:
            async with spawned(argv, cwd=tmp, ready=answering(url)) as child:
                self.assertEqual(child.endpoint, f"tcp:host=127.0.0.1:port={port}")

    async def test_silent_child_hint(self) -> None:
        """A child that printed nothing before the timeout gets a hint about
        buffered output."""
        argv = [PY, "-c", "import sys; sys.stdin.read()"]
        with self.assertRaises(ProcessNotReady) as caught:
            async with spawned(argv, ready=printed("ready"), timeout=0.3):
                self.fail("the block ran")  # pragma: no cover
        self.assertIn("flush=True", str(caught.exception))

    async def test_accepting_tcp_port(self) -> None:
        """accepting(port) gives the address it reached."""
        port = free_port()
        code = (
            "import socket, sys; s = socket.socket(); "
            "s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(); sys.stdin.read()"
        )
        async with spawned([PY, "-c", code, str(port)], ready=accepting(port)) as child:
            self.assertEqual(child.url, f"http://127.0.0.1:{port}/")

    async def test_death_before_ready(self) -> None:
        """A child that exits before it is ready fails the entry with its
        status and output; the block does not run."""
        argv = [PY, "-c", "print('cannot bind: address in use'); raise SystemExit(3)"]
        with self.assertRaises(ProcessNotReady) as caught:
            async with spawned(argv, ready=printed("listening")):
                self.fail("the block ran")  # pragma: no cover
        error = caught.exception
        self.assertEqual(error.returncode, 3)
        self.assertEqual(error.output, ("cannot bind: address in use",))
        self.assertIn("exited with status 3 before it was ready", str(error))
        self.assertIn("| cannot bind: address in use", str(error))

    async def test_not_ready_in_time(self) -> None:
        """A child that never gets ready fails the entry after ``timeout``;
        it was stopped and reaped."""
        argv = [PY, "-c", "print('starting', flush=True); import sys; sys.stdin.read()"]
        with self.assertRaises(ProcessNotReady) as caught:
            async with spawned(argv, ready=printed("listening"), timeout=0.3):
                self.fail("the block ran")  # pragma: no cover
        error = caught.exception
        self.assertIsNone(error.returncode)
        self.assertIn("was not ready within timeout=0.3s", str(error))
        self.assertIn("a line matching 'listening'", str(error))
        assert error.pid is not None
        with self.assertRaises(ChildProcessError):
            os.waitpid(error.pid, os.WNOHANG)

    async def test_not_ready_wins_over_a_stubborn_exit(self) -> None:
        """A child that is not ready in time and then ignores SIGTERM: the
        entry raises ProcessNotReady, and the exit's CleanupTimeout is a
        note on it, not in its place."""
        # The shell ignores SIGTERM before anything else (a Python child
        # could be signalled before its own handler is set).
        stubborn = 'trap "" TERM; echo starting; exec sleep 60'
        with self.assertRaises(ProcessNotReady) as caught:
            async with spawned(stubborn, shell=True, ready=printed("never"), timeout=1):
                self.fail("the block ran")  # pragma: no cover
        (cleanup,) = caught.exception.cleanconn_cleanup_errors
        self.assertIsInstance(cleanup, CleanupTimeout)

    async def test_no_ready_check_runs_at_once(self) -> None:
        """Without ready=, the block runs as soon as the child started."""
        async with spawned([PY, "-c", "import sys; sys.stdin.read()"]) as child:
            self.assertIsNone(child.returncode)
            self.assertIsInstance(child.pid, int)


#: An HTTP server on the port given (and host: 127.0.0.1 by default) that
#: answers every GET with a 500.
ERROR_SERVER = r"""
import http.server, socket, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(500); self.end_headers()
    def log_message(self, *args):
        pass
host = sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1"
if ":" in host:
    http.server.HTTPServer.address_family = socket.AF_INET6
http.server.HTTPServer((host, int(sys.argv[1])), H).serve_forever()
"""


class ReadinessEdgeTests(Base):
    async def test_polling_stops_when_the_child_dies(self) -> None:
        """accepting()'s tries end with the scope: nothing is left trying."""
        async with clean_reactor():
            with self.assertRaises(ProcessNotReady):
                async with spawned(["false"], ready=accepting(free_port())):
                    self.fail("the block ran")  # pragma: no cover

    async def test_polling_stops_mid_request(self) -> None:
        """answering()'s tries end with the scope even while a request is
        in flight (a server that accepts and never answers)."""
        port = free_port()
        code = (
            "import socket, sys\n"
            "s = socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen()\n"
            "held = []\n"
            "while True: held.append(s.accept())\n"
        )
        url = f"http://127.0.0.1:{port}/"
        async with clean_reactor():
            with self.assertRaises(ProcessNotReady):
                async with spawned(
                    [PY, "-c", code, str(port)], ready=answering(url), timeout=1
                ):
                    self.fail("the block ran")  # pragma: no cover

    async def test_polling_stops_when_cancelled(self) -> None:
        """answering()'s tries end when a deadline cancels the entry."""

        @deadline(0.3)
        async def enter() -> None:
            url = f"http://127.0.0.1:{free_port()}/"
            async with spawned(["cat"], ready=answering(url), timeout=30):
                pass  # pragma: no cover

        async with clean_reactor():
            with self.assertRaises(DeadlineExceeded):
                await enter()

    async def test_address_taken_before_the_child_starts(self) -> None:
        """accepting() refuses an address something else already accepts on,
        before starting the child: EADDRINUSE, saying what to do."""
        from twisted.internet.protocol import Factory, Protocol

        from cleanconn import serving

        async with serving(Factory.forProtocol(Protocol)) as port:
            number = port.getHost().port
            with self.assertRaises(OSError) as caught:
                async with spawned(["cat"], ready=accepting(number)):
                    self.fail("the block ran")  # pragma: no cover
        self.assertEqual(caught.exception.errno, errno.EADDRINUSE)
        self.assertEqual(
            caught.exception.strerror,
            f"spawned(): 127.0.0.1:{number} already accepts connections before "
            "the child started, so the readiness check could not tell the child "
            "from what is there now. Stop what listens there, or give the child "
            "another address.",
        )

    async def test_relative_unix_path_taken_in_the_childs_cwd(self) -> None:
        """accepting() with a relative path refuses a socket that something
        else already accepts on in the child's cwd, before starting it."""
        from twisted.internet.protocol import Factory, Protocol

        from cleanconn import serving

        with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
            path = os.path.join(tmp, "s.sock")
            async with serving(Factory.forProtocol(Protocol), unix=path):
                with self.assertRaises(OSError) as caught:
                    async with spawned(["cat"], cwd=tmp, ready=accepting("s.sock")):
                        self.fail("the block ran")  # pragma: no cover
        self.assertEqual(caught.exception.errno, errno.EADDRINUSE)
        self.assertIn(f"{path}' already accepts", caught.exception.strerror)

    async def test_answering_with_a_status(self) -> None:
        """answering(url, status=500) is ready on a 500; the block runs."""
        port = free_port()
        url = f"http://127.0.0.1:{port}/"
        argv = [PY, "-c", ERROR_SERVER, str(port)]
        async with spawned(argv, ready=answering(url, status=500)) as child:
            self.assertEqual(child.url, url)

    async def test_answering_with_statuses(self) -> None:
        """answering(url, status=[...]) is ready on any of them."""
        port = free_port()
        url = f"http://127.0.0.1:{port}/"
        argv = [PY, "-c", ERROR_SERVER, str(port)]
        async with spawned(argv, ready=answering(url, status=[503, 500])) as child:
            self.assertEqual(child.url, url)

    async def test_answering_localhost_gives_an_address(self) -> None:
        """answering() on a localhost URL gives the address 127.0.0.1, and
        its url is the URL it reached."""
        port = free_port()
        url = f"http://localhost:{port}/status"
        argv = [PY, "-c", ERROR_SERVER, str(port)]
        async with spawned(argv, ready=answering(url, status=500)) as child:
            self.assertEqual(child.address, IPv4Address("TCP", "127.0.0.1", port))
            self.assertEqual(child.url, url)

    async def test_answering_ipv6_gives_an_address(self) -> None:
        """answering() on an IPv6 URL gives an IPv6 address."""
        if not has_ipv6():
            raise SkipTest("this machine has no IPv6 loopback")
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
            port = s.getsockname()[1]
        argv = [PY, "-c", ERROR_SERVER, str(port), "::1"]
        ready = answering(f"http://[::1]:{port}/", status=500)
        async with spawned(argv, ready=ready) as child:
            self.assertEqual(child.address, IPv6Address("TCP", "::1", port))

    def test_answering_url_without_a_port(self) -> None:
        """The address answering() gives for a URL without a port has its
        scheme's port: 80 for http, 443 for https."""
        for url, port in (("http://127.0.0.1/", 80), ("https://127.0.0.1/", 443)):
            child = answered(url)
            self.assertEqual(child.address, IPv4Address("TCP", "127.0.0.1", port))
            self.assertEqual(child.url, url)

    def test_answering_a_host_name_gives_no_address(self) -> None:
        """answering() on a URL that names a host, not an IP address or
        localhost, gives the URL but no address."""
        url = "http://example.com:8080/"
        child = answered(url)
        self.assertIsNone(child.address)
        self.assertEqual(child.url, url)

    async def test_url_answering_before_the_child_starts(self) -> None:
        """answering() refuses a URL that something else already answers at,
        before starting the child."""
        from twisted.internet.protocol import Factory, Protocol

        from cleanconn import serving

        async with serving(Factory.forProtocol(Protocol)) as port:
            url = f"http://127.0.0.1:{port.getHost().port}/"
            with self.assertRaises(OSError) as caught:
                async with spawned(["cat"], ready=answering(url)):
                    self.fail("the block ran")  # pragma: no cover
        self.assertIn(f"(of {url}) already accepts", str(caught.exception))

    def test_readiness_repr(self) -> None:
        """A readiness check's repr says what it waits for."""
        self.assertEqual(
            repr(printed("up", on="stderr")),
            "<cleanconn readiness: a line matching 'up' on stderr>",
        )
        self.assertEqual(
            repr(printed(b"up")),
            "<cleanconn readiness: a line matching b'up' on stdout or stderr>",
        )

    def test_accepting_repr(self) -> None:
        """accepting()'s repr names the address it waits for."""
        self.assertEqual(
            repr(accepting(8080)),
            "<cleanconn readiness: 127.0.0.1:8080 to accept a connection>",
        )

    async def test_last_try_named(self) -> None:
        """A server that answers 500 until the timeout: the error says so."""
        port = free_port()
        url = f"http://127.0.0.1:{port}/"
        argv = [PY, "-c", ERROR_SERVER, str(port)]
        with self.assertRaises(ProcessNotReady) as caught:
            async with spawned(argv, ready=answering(url), timeout=3):
                self.fail("the block ran")  # pragma: no cover
        self.assertEqual(
            caught.exception.waiting, f"{url} to answer (last try: HTTP 500)"
        )

    async def test_unfinished_last_line_matches(self) -> None:
        """A last line without a newline matches once the output ends."""
        code = (
            "import os, sys; print('ready', end='', flush=True); "
            "os.close(1); sys.stdin.read()"
        )
        async with spawned([PY, "-c", code], ready=printed("^ready$")) as child:
            self.assertIsNone(child.returncode)

    async def test_exit_seen_before_the_pipes_close(self) -> None:
        """A child that exits while a process it started holds its output
        fails the entry soon, not after the whole timeout."""
        started = time.monotonic()
        with self.assertRaises(ProcessNotReady) as caught:
            async with spawned(
                "sleep 30 & exit 3", shell=True, ready=printed("never"), timeout=5
            ):
                self.fail("the block ran")  # pragma: no cover
        self.assertEqual(caught.exception.returncode, 3)
        self.assertLess(time.monotonic() - started, 5)

    async def test_relative_unix_path_is_the_childs(self) -> None:
        """accepting() with a relative path looks in the child's cwd."""
        code = (
            "import socket, sys\n"
            "s = socket.socket(socket.AF_UNIX); s.bind('s.sock'); s.listen()\n"
            "while True: s.accept()[0].close()\n"
        )
        with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
            async with spawned(
                [PY, "-c", code], cwd=tmp, ready=accepting("s.sock")
            ) as child:
                self.assertEqual(child.endpoint, f"unix:path={tmp}/s.sock")


class ExitTests(Base):
    async def test_exit_ends_and_reaps(self) -> None:
        """At the exit the child is stopped (SIGTERM), reaped, every pipe closed."""
        async with spawned([PY, "-c", UPPER_SERVER], ready=printed("port")) as child:
            pass
        self.assertEqual(child.returncode, -15)
        self.assert_reaped(child)

    async def test_stop_signal_by_full_name(self) -> None:
        """stop_signal takes a signal's full name too, in any case."""
        # Ready once it runs sleep: a signal that came between the fork and
        # the exec would reach the Python of the fork (Twisted 22.8 forks).
        argv = ["sh", "-c", "echo up; exec sleep 30"]
        async with spawned(argv, stop_signal="sigint", ready=printed("up")) as child:
            pass
        self.assertEqual(child.returncode, -signal.SIGINT)

    async def test_stdin_closed_at_exit(self) -> None:
        """The exit closes stdin first: a filter that ends at EOF gets it."""
        async with spawned(["cat"], stop_signal="CONT") as child:
            child.stdin.write(b"abc")
        self.assertEqual(child.returncode, 0)
        self.assertEqual(await child.stdout.read(), b"abc")

    async def test_sigterm_ignored(self) -> None:
        """A child that ignores SIGTERM is killed after ``timeout``, and
        CleanupTimeout names it and what it took."""
        started = time.monotonic()
        with self.assertRaises(CleanupTimeout) as caught:
            async with spawned(
                [PY, "-c", STUBBORN], ready=printed("ready"), timeout=2
            ) as child:
                pass
        self.assertLess(time.monotonic() - started, 2 + ABORT_GRACE + MARGIN)
        (report,) = caught.exception.processes
        self.assertEqual(report.pid, child.pid)
        self.assertEqual(report.output, ("ready",))
        self.assertEqual(report.returncode, -9)
        self.assertTrue(report.ended)
        self.assertEqual(
            report.needed,
            "did not end within timeout=2.0s of SIGTERM, so it was sent SIGKILL",
        )
        self.assert_reaped(child)

    async def test_grandchild_holding_stdout_is_reported(self) -> None:
        """A grandchild that keeps the pipes open does not hang the exit: it
        is reported, and the pipes are closed on this side."""
        with self.assertRaises(CleanupTimeout) as caught:
            async with spawned(
                [PY, "-c", WITH_GRANDCHILD], ready=printed("ready"), timeout=2
            ) as child:
                line = await child.stdout.readline()
        grandchild = int(line.split()[1])
        try:
            (report,) = caught.exception.processes
            self.assertEqual(
                report.needed,
                "had exited, but stdout and stderr stayed open for timeout=2.0s: a "
                "process it started holds them, so cleanconn closed its own ends of "
                "them. Pass process_group=True to spawned() to end such processes too",
            )
            self.assert_reaped(child)
        finally:
            os.kill(grandchild, 9)

    async def test_grandchild_holding_stdin_with_unsent_bytes(self) -> None:
        """A process the child started holds stdin, never reading what is
        buffered for it: the exit still closes every pipe, and says stdin."""
        code = (
            "import subprocess, sys; "
            "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'], "
            "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
            "print('ready', flush=True)"
        )
        async with clean_reactor():
            with self.assertRaises(CleanupTimeout) as caught:
                async with spawned(
                    [PY, "-c", code], ready=printed("ready"), timeout=2
                ) as child:
                    child.stdin.write(b"x" * (1 << 20))
                    # Its stdout closes as it exits (the grandchild has none).
                    await child.stdout.read()
        self.assertIn("had exited, but stdin stayed open", str(caught.exception))
        self.assert_reaped(child)

    async def test_shell_ends_what_it_started(self) -> None:
        """shell=True ends the commands the shell started, with it."""
        async with spawned("sleep 30 & echo started; wait", shell=True) as child:
            self.assertEqual(await child.stdout.readline(), b"started\n")
        self.assert_reaped(child)

    async def test_process_group_ends_grandchildren(self) -> None:
        """With process_group=True the exit ends the grandchild too, at once."""
        async with spawned(
            [PY, "-c", WITH_GRANDCHILD], ready=printed("ready"), process_group=True
        ) as child:
            grandchild = int((await child.stdout.readline()).split()[1])
        self.assert_reaped(child)
        self.assertTrue(gone(grandchild))

    async def test_process_group_kills_group_that_ignores_sigterm(self) -> None:
        """A process group whose members ignore SIGTERM is killed whole."""
        code = (
            "import signal, subprocess, sys, time; "
            "signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "g = subprocess.Popen([sys.executable, '-c', "
            "'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "time.sleep(120)'], stdout=subprocess.DEVNULL); "
            "print(g.pid, flush=True); time.sleep(120)"
        )
        with self.assertRaises(CleanupTimeout) as caught:
            async with spawned(
                [PY, "-c", code], ready=printed(r"\d+"), process_group=True, timeout=2
            ) as child:
                pass
        assert child.match is not None
        grandchild = int(child.match[0])
        (report,) = caught.exception.processes
        self.assertEqual(
            report.needed,
            "did not end within timeout=2.0s of SIGTERM to its process group, so it "
            "was sent SIGKILL to its process group",
        )
        self.assert_reaped(child)
        self.assertTrue(gone(grandchild))

    async def test_flood_does_not_block_the_child(self) -> None:
        """A child that prints far more than is read ends by itself: its
        output is kept within the limit, the rest counted as dropped."""
        code = "import sys; sys.stdout.buffer.write(b'x' * (32 << 20)); print('done')"
        async with spawned([PY, "-c", code], output_limit=1 << 20) as child:
            self.assertEqual(await child.wait(), 0)
        self.assertLessEqual(len(child.stdout._buffer), 1 << 20)
        self.assertEqual(
            child.stdout.dropped + len(await child.stdout.read()), (32 << 20) + 5
        )
        self.assertLessEqual(len(child.output), 64 * 1024)

    async def test_flood_while_a_line_read_waits(self) -> None:
        """A line never ends: what a waiting readline() holds stays within the
        limit too, the oldest bytes dropped."""
        code = (
            "import sys; sys.stdout.buffer.write(b'x' * (8 << 20)); sys.stdout.flush()"
        )
        async with spawned([PY, "-c", code], output_limit=1 << 20) as child:
            line = await child.stdout.readline()
        self.assertEqual(len(line), 1 << 20)
        self.assertEqual(child.stdout.dropped, (8 << 20) - (1 << 20))

    async def test_body_exception_wins(self) -> None:
        """The body's exception goes on; the CleanupTimeout is a note on it."""
        with self.assertRaises(KeyError) as caught:
            async with spawned([PY, "-c", STUBBORN], ready=printed("ready"), timeout=2):
                raise KeyError("body")
        (cleanup,) = caught.exception.cleanconn_cleanup_errors
        self.assertIsInstance(cleanup, CleanupTimeout)

    async def test_death_during_block_is_reported(self) -> None:
        """A child that exits with an error during the block fails the exit,
        with its status and output."""
        code = "import sys; print('boom', file=sys.stderr); raise SystemExit(2)"
        with self.assertRaises(ProcessFailed) as caught:
            async with spawned([PY, "-c", code]) as child:
                await child.wait()
        self.assertEqual(caught.exception.returncode, 2)
        self.assertEqual(caught.exception.output, ("boom",))
        self.assertIn("expected_returncodes=(2, ...)", str(caught.exception))

    async def failed_output(self, code: str) -> tuple[str, ...]:
        """The output ProcessFailed shows for a child running ``code`` that
        fails during the block."""
        with self.assertRaises(ProcessFailed) as caught:
            async with spawned([PY, "-c", code + "\nraise SystemExit(1)"]) as child:
                await child.wait()
        output: tuple[str, ...] = caught.exception.output
        return output

    async def test_failure_shows_the_last_twenty_lines(self) -> None:
        """ProcessFailed shows the last 20 lines the child printed."""
        output = await self.failed_output("for i in range(25): print('line', i)")
        self.assertEqual(output, tuple(f"line {i}" for i in range(5, 25)))

    async def test_failure_cuts_long_lines(self) -> None:
        """ProcessFailed shows a line of up to 300 characters whole, a longer
        one cut to 297 and "..."."""
        output = await self.failed_output("print('x' * 301); print('y' * 300)")
        self.assertEqual(output, ("x" * 297 + "...", "y" * 300))

    async def test_failure_shows_invalid_utf8_replaced(self) -> None:
        """Output that is not UTF-8 is shown with replacement characters."""
        code = "import sys; sys.stdout.buffer.write(b'bad \\xff byte\\n')"
        self.assertEqual(await self.failed_output(code), ("bad \ufffd byte",))

    async def test_output_keeps_the_last_64_kib(self) -> None:
        """child.output keeps the last 64 KiB the child printed."""
        code = "import sys; sys.stdout.write(''.join(str(i % 7) for i in range(99999)))"
        printed = "".join(str(i % 7) for i in range(99999)).encode()
        async with spawned([PY, "-c", code]) as child:
            await child.wait()
        self.assertEqual(child.output, printed[-64 * 1024 :])

    async def test_expected_returncode_is_no_failure(self) -> None:
        """A return code in expected_returncodes is not reported."""
        async with spawned(
            [PY, "-c", "raise SystemExit(2)"], expected_returncodes=(2,)
        ) as child:
            self.assertEqual(await child.wait(), 2)

    async def test_killed_by_a_signal_without_a_name(self) -> None:
        """A child killed by a signal that has no name (a real-time one) is
        reported with the signal's number."""
        with self.assertRaises(ProcessFailed) as caught:
            async with spawned(["cat"]) as child:
                child.send_signal(35)  # SIGRTMIN + 1: ends a process by default
                await child.wait()
        self.assertEqual(caught.exception.returncode, -35)
        self.assertIn("was killed by signal 35", str(caught.exception))

    def test_report_of_a_child_still_running(self) -> None:
        """A report of a child that has still not ended says it may be left."""
        from cleanconn import ProcessReport

        report = ProcessReport(42, ("cat",), None, "did not end", ended=False)
        self.assertIn("It has still not ended; it may be left behind", str(report))

    async def test_any_returncode_expected(self) -> None:
        """expected_returncodes=None: no return code is a failure."""
        async with spawned(
            [PY, "-c", "raise SystemExit(3)"], expected_returncodes=None
        ) as child:
            self.assertEqual(await child.wait(), 3)

    async def test_process_group_that_ended_in_the_block(self) -> None:
        """With process_group=True, a child whose group ended during the block
        exits cleanly: there is nothing left to signal."""
        async with spawned([PY, "-c", "pass"], process_group=True) as child:
            self.assertEqual(await child.wait(), 0)
        self.assert_reaped(child)

    async def test_killed_during_block_is_reported(self) -> None:
        """A child killed by a signal during the block is reported as such."""
        with self.assertRaises(ProcessFailed) as caught:
            async with spawned([PY, "-c", "import sys; sys.stdin.read()"]) as child:
                child.send_signal("KILL")
                await child.wait()
        self.assertEqual(caught.exception.returncode, -9)
        self.assertIn("was killed by SIGKILL", str(caught.exception))

    async def test_cancel_during_readiness(self) -> None:
        """A deadline during the readiness wait stops and reaps the child."""
        argv = [PY, "-c", "import sys; sys.stdin.read()"]
        seen: list[ChildProcess] = []

        @deadline(0.3)
        async def enter() -> None:
            scope = spawned(argv, ready=printed("never"), timeout=30)
            seen.append(scope._child)
            async with scope:
                pass  # pragma: no cover

        with self.assertRaises(DeadlineExceeded):
            await enter()
        self.assert_reaped(seen[0])

    async def test_cancel_during_exit(self) -> None:
        """Cancelling the exit kills the child at once and waits for it."""
        started = time.monotonic()
        seen: list[ChildProcess] = []

        @deadline(0.5)
        async def run() -> None:
            async with spawned(
                [PY, "-c", STUBBORN], ready=printed("ready"), timeout=30
            ) as child:
                seen.append(child)

        with self.assertRaises(DeadlineExceeded):
            await run()
        self.assertLess(time.monotonic() - started, 10)
        self.assertEqual(seen[0].returncode, -9)
        self.assert_reaped(seen[0])

    async def test_cancel_in_the_turn_stdout_is_closed(self) -> None:
        """An exit cancelled in the turn the block's code closed stdout
        leaves that close to Twisted: no pipe is closed twice (which logs
        a KeyError on the next turn)."""
        entered: defer.Deferred[ChildProcess] = defer.Deferred()

        async def run() -> None:
            async with spawned([PY, "-c", SAYS_BYE], timeout=30) as child:
                self.assertEqual(await child.stdout.readline(), b"ready\n")
                entered.callback(child)

        scope = defer.ensureDeferred(run())
        child = await entered  # the exit is under way: it sent SIGTERM

        def close_then_cancel(line: bytes) -> bytes:
            child.stdout.close()
            scope.cancel()
            return line

        said = child.stdout.readline().addCallback(close_then_cancel)
        self.assertEqual(await said, b"bye\n")
        with self.assertRaises(defer.CancelledError):
            await scope
        self.assertEqual(child.returncode, -signal.SIGKILL)
        self.assert_reaped(child)

    async def test_close_pipes_forces_a_writer_at_any_fd(self) -> None:
        """close_pipes() (the exit's and the janitor's) force-closes a pipe
        the parent writes, at any fd, that waits for unsent bytes: one
        that is already closing is not mistaken for a reader."""
        ended = _Ended()
        child = reactor.spawnProcess(
            ended, PY, [PY, "-c", "import time; time.sleep(30)"],
            childFDs={0: "w", 1: "r", 2: "r", 3: "w"},
        )  # fmt: skip
        child.writeToChild(3, b"x" * (1 << 20))  # more than a pipe holds
        child.pipes[3].loseConnection()  # waits for bytes nobody reads
        close_pipes(child)
        self.assertEqual(child.pipes, {})
        child.signalProcess("KILL")
        await ended.ended

    async def test_close_pipes_leaves_a_closing_reader_at_fd_0(self) -> None:
        """close_pipes() leaves a pipe the parent reads, already closing,
        to its own close, even at fd 0: nothing is closed twice."""
        ended = _Ended()
        child = reactor.spawnProcess(
            ended, PY, [PY, "-c", "import time; time.sleep(30)"],
            childFDs={0: "r", 1: 1, 2: 2},  # one pipe: no writer to wait on
        )  # fmt: skip
        child.pipes[0].loseConnection()  # its connectionLost comes next turn
        close_pipes(child)
        self.assertEqual(sorted(child.pipes), [0])
        child.signalProcess("KILL")
        # Dead before its one pipe is closed, next turn, when Twisted tries
        # to reap it once (a reactor that handles no SIGCHLD, such as the
        # asyncio one, never tries again): wait without reaping it.
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)
        await ended.ended  # the janitor would see a KeyError logged

    async def test_fifty_children(self) -> None:
        """Fifty children at once: all ready, all reaped."""
        from contextlib import AsyncExitStack

        argv = [PY, "-c", "print('up', flush=True); import sys; sys.stdin.read()"]
        children: list[ChildProcess] = []
        async with AsyncExitStack() as stack:
            entries = [
                defer.ensureDeferred(
                    stack.enter_async_context(
                        spawned(argv, ready=printed("up"), timeout=30)
                    )
                )
                for _ in range(50)
            ]
            children = list(await defer.gatherResults(entries))
        self.assertEqual(len({c.pid for c in children}), 50)
        for child in children:
            self.assert_reaped(child)

    async def test_nothing_left_for_clean_reactor(self) -> None:
        """clean_reactor() finds nothing after a spawned() block."""
        async with clean_reactor():
            async with spawned([PY, "-c", UPPER_SERVER], ready=printed("port")):
                pass


#: Runs spawned() children in a reactor without signal handlers (so without
#: SIGCHLD), each closing its pipes before it exits (so Twisted's one try to
#: reap it, when the pipes close, is too early), and prints "reaped" once
#: each has been reaped.
NO_SIGCHLD = r"""
import sys
from twisted.internet import defer, reactor
from cleanconn import spawned

async def main():
    try:
        late = "import os, time; [os.close(fd) for fd in (0, 1, 2)]; time.sleep(0.05)"
        for _ in range(3):
            async with spawned([sys.executable, "-c", late], timeout=5) as child:
                await child.wait()
        print("reaped", flush=True)
    finally:
        reactor.stop()

reactor.callWhenRunning(defer.ensureDeferred, main())
reactor.run(installSignalHandlers=False)
"""


class NoSignalHandlerTests(Base):
    async def test_reaped_without_sigchld_handler(self) -> None:
        """Children are reaped where the reactor installed no SIGCHLD handler."""
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
        async with spawned([PY, "-c", NO_SIGCHLD], env=env, timeout=30) as child:
            self.assertEqual(await child.stdout.read(), b"reaped\n")
            self.assertEqual(await child.wait(), 0)

    async def test_reap_tries_back_off(self) -> None:
        """Without a SIGCHLD handler, a child whose pipes closed before it
        exited is tried again after 1 ms, then twice as long each time up to
        every 0.1 s, and reaped."""
        code = (
            "import os, signal, sys; print('ready', flush=True); "
            "sys.stdin.readline(); [os.close(fd) for fd in (0, 1, 2)]; signal.pause()"
        )
        delays: list[float] = []
        enough: defer.Deferred[None] = defer.Deferred()
        async with spawned([PY, "-c", code], ready=printed("ready")) as child:
            # Fault injection, once trial's reactor runs (it installs one as
            # it starts): as a reactor run with installSignalHandlers=False.
            previous = signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            self.addCleanup(signal.siginterrupt, signal.SIGCHLD, False)
            self.addCleanup(signal.signal, signal.SIGCHLD, previous)
            schedule = child._reap_later

            def spied(delay: float) -> None:  # each try's pause, as it is set
                delays.append(delay)
                schedule(delay)
                if len(delays) == 9:
                    enough.callback(None)

            child._reap_later = spied  # type: ignore[method-assign]
            child.stdin.write(b"close\n")
            await enough
        self.assertEqual(delays[:9], [0.001 * 2**i for i in range(7)] + [0.1, 0.1])
        self.assertEqual(child.returncode, -signal.SIGTERM)
        self.assert_reaped(child)


class ChildIOTests(Base):
    async def test_stdin_to_stdout(self) -> None:
        """What is written to stdin comes back on stdout, line by line."""
        async with spawned(["cat"]) as child:
            child.stdin.write(b"one\n")
            self.assertEqual(await child.stdout.readline(), b"one\n")
            child.stdin.close()
            self.assertEqual(await child.stdout.read(), b"")
            self.assertEqual(await child.wait(), 0)

    async def test_read_all_output_of_a_command(self) -> None:
        """read() on stdout returns everything a command printed, to its end."""
        async with spawned([PY, "-c", "print('a'); print('b')"]) as child:
            self.assertEqual(await child.stdout.read(), b"a\nb\n")

    async def test_stderr_is_its_own_stream(self) -> None:
        """stderr is read apart from stdout."""
        code = "import sys; print('out'); print('err', file=sys.stderr)"
        async with spawned([PY, "-c", code]) as child:
            self.assertEqual(await child.stderr.read(), b"err\n")
            self.assertEqual(await child.stdout.read(), b"out\n")

    async def test_write_after_close_stdin(self) -> None:
        """Writing to a closed stdin says it was closed."""
        async with spawned(["cat"]) as child:
            child.stdin.close()
            with self.assertRaises(StreamClosed) as caught:
                child.stdin.write(b"late")
        self.assertIn("before closing stdin", str(caught.exception))

    async def test_output_is_not_writable(self) -> None:
        """Writing to stdout says to write to stdin."""
        async with spawned(["cat"]) as child:
            with self.assertRaises(TypeError) as caught:
                child.stdout.write(b"x")
        self.assertIn("child.stdin", str(caught.exception))

    async def test_output_cannot_be_half_closed(self) -> None:
        """close_write() on stdout says to close stdin instead."""
        async with spawned(["cat"]) as child:
            with self.assertRaises(TypeError) as caught:
                child.stdout.close_write()
        self.assertIn("close child.stdin", str(caught.exception))

    async def test_close_output_keeps_what_was_read(self) -> None:
        """stdout.close() stops reading it; what it had read stays readable,
        and then the stream ends."""
        code = "import sys; print('first', flush=True); sys.stdin.read()"
        async with spawned([PY, "-c", code], ready=printed("first")) as child:
            child.stdout.close()
            self.assertEqual(await child.stdout.read(), b"first\n")
            self.assertEqual(
                repr(child.stdout),
                f"<cleanconn stdout of child {child.pid}: 0 bytes unread, "
                "close() closed it>",
            )

    async def test_close_output_breaks_the_pipe(self) -> None:
        """stdout.close() closes the pipe: the child gets EPIPE if it writes
        more."""
        code = (
            "import os, sys\n"
            "print('first', flush=True)\n"
            "try:\n"
            "    for _ in range(2048): os.write(1, b'x' * 4096)\n"
            "    print('no EPIPE in 8 MiB', file=sys.stderr, flush=True)\n"
            "except BrokenPipeError:\n"
            "    print('EPIPE', file=sys.stderr, flush=True)\n"
            "sys.stdin.read()\n"
        )
        async with spawned([PY, "-c", code], ready=printed("first")) as child:
            child.stdout.close()
            self.assertEqual(await child.stderr.readline(), b"EPIPE\n")

    async def test_close_output_after_the_end(self) -> None:
        """stdout.close() once the child has ended changes nothing: what it
        printed stays readable."""
        async with spawned([PY, "-c", "print('bye')"]) as child:
            await child.wait()
            child.stdout.close()
            self.assertEqual(await child.stdout.read(), b"bye\n")
            self.assertIn("the child closed its stdout", repr(child.stdout))

    async def test_output_repr_while_running(self) -> None:
        """stdout's and stderr's reprs name the stream, the child and what is
        unread."""
        async with spawned(["cat"]) as child:
            for stream, name in ((child.stdout, "stdout"), (child.stderr, "stderr")):
                expected = f"<cleanconn {name} of child {child.pid}: 0 bytes unread>"
                self.assertEqual(repr(stream), expected)

    async def test_output_repr_after_the_end(self) -> None:
        """Once the child ended, stdout's and stderr's reprs say it closed them."""
        async with spawned([PY, "-c", "pass"]) as child:
            await child.wait()
            for name in ("stdout", "stderr"):
                self.assertEqual(
                    repr(getattr(child, name)),
                    f"<cleanconn {name} of child {child.pid}: 0 bytes unread, "
                    f"the child closed its {name}>",
                )

    async def test_output_repr_counts_dropped_bytes(self) -> None:
        """An output's repr says how many bytes were dropped to stay within
        output_limit, and how it ended."""
        code = "print('x' * 25)"
        async with spawned([PY, "-c", code], output_limit=10) as child:
            await child.wait()
            self.assertEqual(
                repr(child.stdout),
                f"<cleanconn stdout of child {child.pid}: 10 bytes unread, "
                "16 dropped, the child closed its stdout>",
            )

    async def test_readline_waiting_past_output_limit(self) -> None:
        """A readline() that waits while output_limit drops the oldest bytes
        returns the line from what was kept, and counts what was dropped."""
        code = (
            "import os; input(); os.write(1, b'x' * 25); os.write(2, b'go\\n'); "
            "input(); os.write(1, b'yyyyy\\n')"
        )
        async with spawned([PY, "-c", code], output_limit=10) as child:
            reading = child.stdout.readline()
            child.stdin.write(b"\n")  # the 25 bytes come while it waits
            self.assertEqual(await child.stderr.readline(), b"go\n")
            child.stdin.write(b"\n")
            self.assertEqual(await reading, b"x" * 10 + b"yyyyy\n")
            self.assertEqual(child.stdout.dropped, 15)

    async def test_output_repr_counts_what_a_read_holds(self) -> None:
        """What arrived while a read() waits counts as unread in the repr."""
        from twisted.internet import reactor

        code = "import os, sys; os.write(1, b'abc'); os.write(2, b'go\\n'); input()"
        async with spawned([PY, "-c", code]) as child:
            reading = child.stdout.read()
            self.assertEqual(await child.stderr.readline(), b"go\n")
            # stdout's bytes were written first: they came in the same poll as
            # stderr's, or an earlier one; one turn lets that poll finish.
            await deferLater(reactor, 0, lambda: None)
            self.assertEqual(
                repr(child.stdout),
                f"<cleanconn stdout of child {child.pid}: 3 bytes unread>",
            )
            child.stdin.close()
            self.assertEqual(await reading, b"abc")

    async def test_stdin_says_whether_it_is_closed(self) -> None:
        """stdin.closed and its repr say whether it is open, and why not."""
        async with spawned(["cat"]) as child:
            self.assertFalse(child.stdin.closed)
            self.assertIn(": open>", repr(child.stdin))
            child.stdin.close()
            self.assertTrue(child.stdin.closed)
            self.assertIn("closed: close() closed it", repr(child.stdin))

    async def test_stdin_after_the_child_exited(self) -> None:
        """Once the child exited, stdin is closed, and a write says why."""
        async with spawned([PY, "-c", "pass"]) as child:
            await child.wait()
            self.assertEqual(
                repr(child.stdin),
                f"<cleanconn stdin of child {child.pid}: closed: the child exited>",
            )
            with self.assertRaises(StreamClosed) as caught:
                child.stdin.write(b"late")
        self.assertEqual(
            str(caught.exception),
            "stdin.write(): this stream can no longer write (the child exited). "
            "Write everything before closing stdin; the child's output can still "
            "be read.",
        )

    async def test_stdin_closed_by_the_child(self) -> None:
        """A child that closes its stdin while it runs: stdin says so."""
        from twisted.internet import reactor

        code = (
            "import os, time; os.close(0); print('closed', flush=True); time.sleep(30)"
        )
        async with spawned([PY, "-c", code], ready=printed("closed")) as child:
            # The pipe's close came in the same poll as the line, or an
            # earlier one; one turn lets that poll finish.
            await deferLater(reactor, 0, lambda: None)
            self.assertEqual(
                repr(child.stdin),
                f"<cleanconn stdin of child {child.pid}: closed: the child closed it>",
            )

    async def test_stdin_takes_bytes_only(self) -> None:
        """Writing text to stdin is a TypeError that says to encode it."""
        async with spawned(["cat"]) as child:
            with self.assertRaises(TypeError) as caught:
                child.stdin.write("text")  # type: ignore[arg-type]
        self.assertEqual(
            str(caught.exception),
            "stdin.write() takes bytes, got str 'text'; encode text first "
            "(data.encode())",
        )

    async def test_repr_says_the_returncode(self) -> None:
        """A child that ended says its return code in its repr."""
        async with spawned(
            [PY, "-c", "raise SystemExit(4)"], expected_returncodes=(4,)
        ) as child:
            self.assertIn("running", repr(child))
            await child.wait()
            self.assertIn("returncode 4", repr(child))

    async def test_repr_shows_the_command_on_one_line(self) -> None:
        """A child's repr shows its command line, newlines escaped, whole up
        to 60 characters."""
        script = "read line\n# " + "x" * 41  # 60 characters with "sh -c "
        async with spawned(["sh", "-c", script]) as child:
            self.assertEqual(
                repr(child),
                f"<cleanconn child {child.pid} (sh -c read line\\n# {'x' * 41}): "
                "running>",
            )

    async def test_repr_cuts_a_long_command(self) -> None:
        """A command line longer than 60 characters is cut to 57 and "..."."""
        script = "read line\n# " + "x" * 42
        async with spawned(["sh", "-c", script]) as child:
            self.assertEqual(
                repr(child),
                f"<cleanconn child {child.pid} (sh -c read line\\n# {'x' * 38}...): "
                "running>",
            )

    async def test_no_address_without_a_check_that_finds_one(self) -> None:
        """endpoint and url raise LookupError saying which check gives them."""
        async with spawned(["cat"]) as child:
            for attribute in ("endpoint", "url"):
                with self.assertRaises(LookupError) as caught:
                    getattr(child, attribute)
                self.assertEqual(
                    str(caught.exception),
                    f"<cleanconn child {child.pid} (cat): running> has no "
                    f"{attribute}: no readiness check found where it listens "
                    "(None). Give spawned() ready=accepting(...), "
                    "ready=answering(url), or ready=printed(...) with a pattern "
                    "that has a (?P<port>...) group (and (?P<host>...) if not "
                    "127.0.0.1).",
                )

    async def test_no_url_for_a_unix_socket(self) -> None:
        """A child found listening on a UNIX socket has an endpoint, no url."""
        with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
            path = os.path.join(tmp, "s")
            code = (
                "import socket, sys\n"
                "s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen()\n"
                "while True: s.accept()[0].close()\n"
            )
            async with spawned([PY, "-c", code, path], ready=accepting(path)) as child:
                self.assertEqual(child.endpoint, f"unix:path={path}")
                self.assertRaises(LookupError, getattr, child, "url")

    async def test_wait_after_the_end(self) -> None:
        """wait() on a child that has ended returns its return code at once."""
        async with spawned([PY, "-c", "pass"]) as child:
            self.assertEqual(await child.wait(), 0)
            waited = child.wait()
            self.assertEqual(self.successResultOf(waited), 0)

    async def test_wait_ends_before_its_timeout(self) -> None:
        """wait(timeout=) on a child that ends first returns its code and
        leaves no timer."""
        async with clean_reactor():
            async with spawned([PY, "-c", "raise SystemExit(0)"]) as child:
                self.assertEqual(await child.wait(timeout=60), 0)

    async def test_cancelled_wait_leaves_no_timer(self) -> None:
        """A cancelled wait(timeout=) fails with CancelledError, and its
        timer is gone at once, while the child goes on."""
        async with clean_reactor():
            async with spawned(["cat"]) as child:
                async with clean_reactor():  # the timer, not the child's end
                    waiting = child.wait(timeout=60)
                    waiting.cancel()
                    self.failureResultOf(waiting, defer.CancelledError)
                self.assertIsNone(child.returncode)

    async def test_cancelled_wait_is_forgotten(self) -> None:
        """A cancelled wait() is not fired at the end; a later one is."""
        async with spawned(["cat"]) as child:
            waiting = child.wait()
            waiting.cancel()
            self.failureResultOf(waiting, defer.CancelledError)
            later = child.wait()
            child.stdin.close()
            self.assertEqual(await later, 0)

    async def test_wait_repr(self) -> None:
        """A wait() still waiting says in its repr (which a deadline that
        cancels it shows) which child it waits for."""
        async with spawned(["cat"]) as child:
            waiting = child.wait()
            self.assertEqual(repr(waiting), f"<wait() on {child!r}>")
            child.stdin.close()
            self.assertEqual(await waiting, 0)

    async def test_wait_timeout(self) -> None:
        """wait(timeout=) gives up with WaitTimeout; the child goes on."""
        async with spawned(["cat"]) as child:
            with self.assertRaises(WaitTimeout) as caught:
                await child.wait(timeout=0.1)
            self.assertIsNone(child.returncode)
            self.assertEqual(caught.exception.what, f"wait() on {child!r}")
        self.assertEqual(caught.exception.timeout, 0.1)

    async def test_wait_timeout_message(self) -> None:
        """wait(timeout=)'s WaitTimeout says the child still runs, and what to try."""
        async with spawned(["cat"]) as child:
            with self.assertRaises(WaitTimeout) as caught:
                await child.wait(timeout=0.1)
            self.assertEqual(
                str(caught.exception),
                f"wait() on {child!r} did not complete within timeout=0.1s. The "
                "child is still running. Does it exit by itself, or must the test "
                "end it (child.stdin.close(), child.send_signal())? If it is "
                "merely slow, raise timeout=.",
            )

    async def test_wait_bad_timeout(self) -> None:
        """wait(timeout=) takes a positive number of seconds, and says so."""
        async with spawned(["cat"]) as child:
            with self.assertRaises(ValueError) as caught:
                child.wait(timeout=0)
        self.assertEqual(
            str(caught.exception),
            "ChildProcess.wait(): timeout must be a positive, finite number of "
            "seconds (it bounds every exit), got 0",
        )

    async def test_send_signal(self) -> None:
        """send_signal() reaches the child (its handler runs)."""
        code = (
            "import signal, sys; "
            "signal.signal(signal.SIGHUP, lambda *a: print('hup', flush=True)); "
            "print('ready', flush=True); sys.stdin.read()"
        )
        async with spawned([PY, "-c", code], ready=printed("ready")) as child:
            await child.stdout.readline()
            child.send_signal("HUP")
            self.assertEqual(await child.stdout.readline(), b"hup\n")

    async def test_send_signal_zero(self) -> None:
        """send_signal(0) checks that the child is there, as os.kill(pid, 0),
        and leaves it running."""
        async with spawned(["cat"]) as child:
            child.send_signal(0)
            child.stdin.close()
            self.assertEqual(await child.wait(), 0)

    async def test_send_signal_of_the_wrong_kind(self) -> None:
        """send_signal() refuses what is not a signal, saying what it takes."""
        async with spawned(["cat"]) as child:
            with self.assertRaises(ValueError) as caught:
                child.send_signal("NOPE")
        self.assertEqual(
            str(caught.exception),
            "ChildProcess.send_signal() takes a signal (signal.SIGTERM, or a name "
            "such as \"TERM\"), got 'NOPE'",
        )

    async def test_send_signal_after_exit_with_pipes_held(self) -> None:
        """send_signal() to a child that exited raises ProcessExitedAlready,
        even while a process it started still holds one of its pipes."""
        code = (
            "import subprocess, sys; "
            "subprocess.Popen([sys.executable, '-c', 'import sys; sys.stdin.read()'], "
            "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)"
        )
        async with spawned([PY, "-c", code]) as child:
            await exited(child)
            self.assertFalse(child.ended)  # the grandchild holds stdin
            with self.assertRaises(ProcessExitedAlready):
                child.send_signal("TERM")

    async def test_send_signal_after_exit(self) -> None:
        """send_signal() to a child that ended raises ProcessExitedAlready."""
        async with spawned([PY, "-c", "pass"]) as child:
            await child.wait()
            with self.assertRaises(ProcessExitedAlready):
                child.send_signal("TERM")

    async def test_env_and_cwd(self) -> None:
        """env= is the child's whole environment, and cwd= its directory."""
        code = "import os; print(os.getenv('ONLY'), 'HOME' in os.environ, os.getcwd())"
        with tempfile.TemporaryDirectory() as tmp:
            async with spawned([PY, "-c", code], env={"ONLY": "yes"}, cwd=tmp) as child:
                out = await child.stdout.read()
        self.assertEqual(out.decode().split(), ["yes", "False", os.path.realpath(tmp)])

    async def test_shell(self) -> None:
        """shell=True runs one command string with /bin/sh."""
        async with spawned("echo $((6 * 7))", shell=True) as child:
            self.assertEqual(await child.stdout.read(), b"42\n")


class BadInputTests(Base):
    def refused(self, error: type[Exception], call: Callable[[], object]) -> str:
        """What ``call()`` raised, as text; it must raise ``error``."""
        with self.assertRaises(error) as caught:
            call()
        return str(caught.exception)

    def test_string_argv(self) -> None:
        """A command string without shell=True is refused, with what to do."""
        self.assertEqual(
            self.refused(TypeError, lambda: spawned("python -V")),
            "spawned() takes the command as a list of arguments, such as "
            "[sys.executable, 'server.py'], got the string 'python -V'; split it "
            "yourself (shlex.split), or pass shell=True to run it with /bin/sh",
        )

    def test_missing_program(self) -> None:
        """A program not on PATH is refused before anything starts, saying
        where it was looked for."""
        path = os.environ.get("PATH", os.defpath)
        self.assertEqual(
            self.refused(
                FileNotFoundError, lambda: spawned(["no-such-program-cleanconn"])
            ),
            f"spawned(): no executable 'no-such-program-cleanconn' on PATH ({path}); "
            "give its path, or set PATH in env=",
        )

    def test_missing_program_without_path(self) -> None:
        """With no PATH in this process's environment, a program is looked
        for on the default path, as execvp does."""
        self.addCleanup(os.environ.__setitem__, "PATH", os.environ.pop("PATH"))
        self.assertEqual(
            self.refused(FileNotFoundError, lambda: spawned(["no-such-program"])),
            f"spawned(): no executable 'no-such-program' on PATH ({os.defpath}); "
            "give its path, or set PATH in env=",
        )

    def test_empty_argv(self) -> None:
        """An empty command is refused."""
        self.assertEqual(
            self.refused(ValueError, lambda: spawned([])),
            "spawned() needs a command: argv is empty",
        )

    def test_bad_ready(self) -> None:
        """ready= takes only a readiness check."""
        self.assertEqual(
            self.refused(TypeError, lambda: spawned(["cat"], ready="up")),  # type: ignore[arg-type]
            "spawned(): ready= takes printed(...), accepting(...) or "
            "answering(...), got 'up'",
        )

    def test_bad_expected_returncodes(self) -> None:
        """expected_returncodes takes a collection, and says so."""
        self.assertEqual(
            self.refused(
                TypeError,
                lambda: spawned(["cat"], expected_returncodes=0),  # type: ignore[arg-type]
            ),
            "spawned(): expected_returncodes takes a collection of return codes, "
            "such as (0,) or (0, 2), or None for any; got 0",
        )

    def test_bad_signal(self) -> None:
        """An unknown stop_signal is refused, saying what it takes."""
        self.assertEqual(
            self.refused(ValueError, lambda: spawned(["cat"], stop_signal="NOPE")),
            "spawned(): stop_signal takes a signal (signal.SIGTERM, or a name such "
            "as \"TERM\"), got 'NOPE'",
        )

    def test_cwd_not_a_directory(self) -> None:
        """A cwd that is not a directory is refused."""
        self.assertEqual(
            self.refused(NotADirectoryError, lambda: spawned(["cat"], cwd="/no/dir")),
            "spawned(): cwd='/no/dir' is not a directory",
        )

    def test_env_not_a_mapping(self) -> None:
        """env= takes a mapping."""
        self.assertEqual(
            self.refused(TypeError, lambda: spawned(["cat"], env=["PATH=/bin"])),  # type: ignore[arg-type]
            "spawned(): env= takes a mapping, got ['PATH=/bin']",
        )

    def test_bad_output_limit(self) -> None:
        """output_limit must be a positive number of bytes."""
        for bad in (0, -1, 1.5, True):
            self.assertEqual(
                self.refused(ValueError, partial(spawned, ["cat"], output_limit=bad)),  # type: ignore[arg-type]
                "spawned(): output_limit must be a positive number of bytes, "
                f"got {bad!r}",
            )

    def test_returncodes_must_be_ints(self) -> None:
        """expected_returncodes holds ints only."""
        self.assertEqual(
            self.refused(
                TypeError,
                lambda: spawned(["cat"], expected_returncodes=("0",)),  # type: ignore[arg-type]
            ),
            "spawned(): expected_returncodes takes return codes (ints), got ('0',)",
        )

    def test_reactor_without_processes(self) -> None:
        """A reactor that cannot start processes is refused (a MemoryReactor
        stands for one: every POSIX reactor can)."""
        from twisted.internet.testing import MemoryReactorClock

        memory = MemoryReactorClock()
        self.assertEqual(
            self.refused(TypeError, lambda: spawned(["cat"], reactor=memory)),  # type: ignore[arg-type]
            "spawned() needs a reactor that can start processes "
            f"(IReactorProcess), got {memory!r}",
        )

    def test_signal_of_the_wrong_kind(self) -> None:
        """stop_signal takes a signal number or name, nothing else."""
        for bad in (1.5, -1, signal.NSIG, True, None):
            with self.assertRaises(ValueError):
                spawned(["cat"], stop_signal=bad)  # type: ignore[arg-type]

    def test_shell_takes_a_string(self) -> None:
        """shell=True takes the command as one string."""
        self.assertEqual(
            self.refused(TypeError, lambda: spawned(["echo", "hi"], shell=True)),
            "spawned(..., shell=True) takes the command as one string, "
            "got ['echo', 'hi']",
        )

    def test_arguments_of_the_wrong_kind(self) -> None:
        """Arguments that are not str, bytes or paths are refused."""
        self.assertEqual(
            self.refused(TypeError, lambda: spawned(["echo", 42])),  # type: ignore[list-item]
            "spawned() takes a list of str, bytes or path arguments, got ['echo', 42]",
        )

    def test_program_path_not_executable(self) -> None:
        """A program given by path must be an executable file."""
        with tempfile.NamedTemporaryFile(suffix=".sh") as script:
            self.assertEqual(
                self.refused(FileNotFoundError, lambda: spawned([script.name])),
                f"spawned(): {script.name!r} is not an executable file",
            )

    def test_relative_program_without_cwd(self) -> None:
        """Without cwd=, a relative program path is this process's: one not
        there is refused."""
        self.assertEqual(
            self.refused(FileNotFoundError, lambda: spawned(["./nothere"])),
            "spawned(): './nothere' is not an executable file",
        )

    def test_relative_program_not_there(self) -> None:
        """A relative program path missing from cwd= is refused, naming cwd."""
        self.assertEqual(
            self.refused(FileNotFoundError, lambda: spawned(["./nothere"], cwd="/tmp")),
            "spawned(): './nothere' is not an executable file (relative to cwd='/tmp')",
        )

    def test_path_from_env(self) -> None:
        """With env=, the program is looked for on env's PATH, not this
        process's; the error says where it looked."""
        self.assertEqual(
            self.refused(
                FileNotFoundError,
                lambda: spawned(["cat"], env={"PATH": "/nonexistent"}),
            ),
            "spawned(): no executable 'cat' on PATH (/nonexistent); give its "
            "path, or set PATH in env=",
        )

    def test_bytes_path_from_env(self) -> None:
        """An env= whose PATH is given as bytes is searched too."""
        with self.assertRaises(FileNotFoundError) as caught:
            spawned(["cat"], env={b"PATH": b"/nonexistent"})  # type: ignore[dict-item]
        self.assertIn("on PATH (/nonexistent)", str(caught.exception))

    async def test_env_without_path(self) -> None:
        """With an env= that has no PATH, the program is looked for on the
        default path, as execvp does."""
        async with spawned(["cat"], env={}) as child:
            self.assertEqual(child.argv, ("cat",))
            child.stdin.close()
            self.assertEqual(await child.wait(), 0)

    async def test_relative_program_is_the_cwds(self) -> None:
        """A relative program path is relative to cwd=, as the child sees it."""
        with tempfile.TemporaryDirectory() as tmp:
            script = os.path.join(tmp, "hello")
            with open(script, "w") as f:
                f.write("#!/bin/sh\necho hello\n")
            os.chmod(script, 0o755)
            async with spawned(["./hello"], cwd=tmp) as child:
                self.assertEqual(await child.stdout.read(), b"hello\n")

    def test_bad_accepting(self) -> None:
        """accepting() refuses what is not a port, pair or path, saying what
        it takes."""
        bad_ones = (0, 65536, True, ("::1",), ("::1", 0), ("::1", 65536))
        for bad in (*bad_ones, (1, 80), ("::1", "80"), 1.5, ""):
            self.assertEqual(
                self.refused(TypeError, partial(accepting, bad)),  # type: ignore[arg-type]
                "accepting() takes a TCP port (an int from 1 to 65535), a (host, "
                f"port) pair, or a UNIX socket path; got {bad!r}",
            )

    def test_accepting_takes_every_port(self) -> None:
        """accepting() takes ports 1 to 65535, alone or with a host."""
        for address, where in (
            (1, "127.0.0.1:1"),
            (65535, "127.0.0.1:65535"),
            (("127.0.0.1", 1), "127.0.0.1:1"),
            (("::1", 65535), "[::1]:65535"),
        ):
            self.assertEqual(
                repr(accepting(address)),
                f"<cleanconn readiness: {where} to accept a connection>",
            )

    def test_bad_printed(self) -> None:
        """printed() refuses a non-pattern and an unknown stream."""
        self.assertEqual(
            self.refused(TypeError, partial(printed, 42)),  # type: ignore[arg-type]
            "printed() takes a regular expression (str, bytes or a compiled "
            "pattern), got int 42",
        )
        self.assertEqual(
            self.refused(ValueError, partial(printed, "x", on="stdin")),
            'printed(): on= must be "stdout", "stderr" or "any", got \'stdin\'',
        )

    def test_bad_answering(self) -> None:
        """answering() takes an http(s) URL."""
        self.assertEqual(
            self.refused(TypeError, partial(answering, "localhost:8080")),
            "answering() takes an http:// or https:// URL, got 'localhost:8080'",
        )

    def test_answering_https(self) -> None:
        """answering() takes an https:// URL too."""
        self.assertEqual(
            repr(answering("https://example.com/")),
            "<cleanconn readiness: https://example.com/ to answer>",
        )
