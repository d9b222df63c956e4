"""
UNIX sockets: a private directory that cleanconn makes and removes, or a
path of your own.
"""

from __future__ import annotations

import os
import stat
import tempfile

from twisted.internet.protocol import Factory
from twisted.trial.unittest import TestCase

from cleanconn import connected, serving

from .echo_protocols import Collector, Echo


class UNIXTests(TestCase):
    async def test_private_directory(self) -> None:
        """unix=True: a socket in a new directory only this user can enter."""
        async with serving(Factory.forProtocol(Echo), unix=True) as port:
            path = os.fsdecode(port.getHost().name)
            folder_mode = stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode)
            self.assertEqual(folder_mode, 0o700)
            async with connected(port, Factory.forProtocol(Collector)) as client:
                client.transport.write(b"local")
                self.assertEqual(await client.read(5), b"local")
        # The socket file and its directory are gone.
        self.assertFalse(os.path.exists(os.path.dirname(path)))

    async def test_path_of_your_own(self) -> None:
        """unix="/some/path": listen there; the socket file is removed at exit."""
        folder = tempfile.mkdtemp()
        self.addCleanup(os.rmdir, folder)
        path = os.path.join(folder, "server.sock")
        async with serving(Factory.forProtocol(Echo), unix=path) as port:
            async with connected(port, Factory.forProtocol(Collector)) as client:
                client.transport.write(b"mine")
                self.assertEqual(await client.read(4), b"mine")
        self.assertFalse(os.path.exists(path))
