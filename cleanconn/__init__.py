"""
Scopes for end-to-end tests over the real Twisted reactor that always clean
up: stop listening, close both ends of every connection, and wait for each.

:func:`clean_reactor` checks that a block left nothing on the reactor. The
pytest plugin ``cleanconn.pytest_plugin`` (not imported here: it needs
pytest and pytest-twisted) runs every test inside it; enable it with
``pytest_plugins = ["cleanconn.pytest_plugin"]`` in the top-level
``conftest.py``.
"""

from ._connected import connected
from ._connections import lost
from ._datagrams import DatagramStream, datagrams
from ._deadline import deadline
from ._enter_scope import enter_scope
from ._errors import (
    CleanConnError,
    CleanupTimeout,
    ConnectionRejected,
    ConnectionReport,
    ConnectTimeout,
    DeadlineExceeded,
    DirtyReactorError,
    FragmentationFailed,
    IncompleteReadError,
    ProcessFailed,
    ProcessNotReady,
    ProcessReport,
    ProtocolError,
    ReactorNotRunning,
    ScopeClosed,
    StreamClosed,
    TLSUnavailable,
    WaitingAt,
    WaitTimeout,
)
from ._faults import (
    Fault,
    bandwidth,
    blackhole,
    latency,
    limit_data,
    reset_peer,
    slicer,
    slow_close,
    stop_reading,
)
from ._http import base_url, http_client
from ._janitor import clean_reactor
from ._many import connected_many
from ._process import ChildOutput, ChildProcess, ChildStdin, spawned
from ._proxy import Direction, Proxy, proxied
from ._reactor import CleanconnReactor
from ._ready import Readiness, accepting, answering, printed
from ._scope import DEFAULT_TIMEOUT
from ._serving import ServingPort, serving
from ._streams import Stream, StreamFactory
from ._sweep import sweep_fragmentation
from ._testcase import TestCase
from ._tls import ThrowawayCA

__all__ = [
    "DEFAULT_TIMEOUT",
    "ChildOutput",
    "ChildProcess",
    "ChildStdin",
    "CleanConnError",
    "CleanconnReactor",
    "CleanupTimeout",
    "ConnectTimeout",
    "ConnectionRejected",
    "ConnectionReport",
    "DatagramStream",
    "DeadlineExceeded",
    "Direction",
    "DirtyReactorError",
    "Fault",
    "FragmentationFailed",
    "IncompleteReadError",
    "ProcessFailed",
    "ProcessNotReady",
    "ProcessReport",
    "ProtocolError",
    "Proxy",
    "ReactorNotRunning",
    "Readiness",
    "ScopeClosed",
    "ServingPort",
    "Stream",
    "StreamClosed",
    "StreamFactory",
    "TLSUnavailable",
    "TestCase",
    "ThrowawayCA",
    "WaitTimeout",
    "WaitingAt",
    "accepting",
    "answering",
    "bandwidth",
    "base_url",
    "blackhole",
    "clean_reactor",
    "connected",
    "connected_many",
    "datagrams",
    "deadline",
    "enter_scope",
    "http_client",
    "latency",
    "limit_data",
    "lost",
    "printed",
    "proxied",
    "reset_peer",
    "serving",
    "slicer",
    "slow_close",
    "spawned",
    "stop_reading",
    "sweep_fragmentation",
]
