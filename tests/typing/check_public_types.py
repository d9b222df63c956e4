"""
What the type checker infers for each public scope: checked by mypy in the
``typecheck`` session (``assert_type`` fails the run on a mismatch), never
run. Each function is one promise of the public types.
"""

from __future__ import annotations

from treq.client import HTTPClient
from twisted.internet.interfaces import IProtocol, IProtocolFactory
from twisted.internet.protocol import ClientFactory, Factory, Protocol
from typing_extensions import assert_type

from cleanconn import (
    ServingPort,
    ThrowawayCA,
    clean_reactor,
    connected,
    connected_many,
    enter_scope,
    http_client,
    serving,
)


class Echo(Protocol):
    """A protocol class of the user's own."""

    def reply(self) -> bytes:
        return b""


async def serving_yields_a_serving_port(factory: IProtocolFactory) -> None:
    """``serving()`` yields a :class:`ServingPort`."""
    async with serving(factory) as port:
        assert_type(port, ServingPort)
        assert_type(port.tls, "ThrowawayCA | None")


async def connected_yields_the_factorys_protocol(port: ServingPort) -> None:
    """``connected()`` with a ``Factory[Echo]`` yields an ``Echo``."""
    async with connected(port, Factory.forProtocol(Echo)) as proto:
        assert_type(proto, Echo)
        assert_type(proto.reply(), bytes)


async def connected_with_a_client_factory(port: ServingPort) -> None:
    """``ClientFactory.forProtocol`` works the same."""
    async with connected(port, ClientFactory.forProtocol(Echo)) as proto:
        assert_type(proto, Echo)


async def connected_with_any_factory(
    port: ServingPort, factory: IProtocolFactory
) -> None:
    """Any other ``IProtocolFactory`` gives an ``IProtocol``."""
    async with connected(port, factory) as proto:
        assert_type(proto, IProtocol)


async def connected_takes_client_tls_options(port: ServingPort) -> None:
    """``tls=`` takes client TLS options such as a ThrowawayCA's."""
    ca = ThrowawayCA()
    factory = Factory.forProtocol(Echo)
    async with connected(port, factory, tls=ca.client_options()) as proto:
        assert_type(proto, Echo)


async def connected_many_yields_a_list_of_it(port: ServingPort) -> None:
    """``connected_many()`` yields a list of the factory's protocol."""
    async with connected_many(port, Factory.forProtocol(Echo), 3) as protos:
        assert_type(protos, list[Echo])


async def http_client_yields_treqs_client(port: ServingPort) -> None:
    """``http_client()`` yields treq's ``HTTPClient``."""
    async with http_client(port) as client:
        assert_type(client, HTTPClient)


async def clean_reactor_yields_nothing() -> None:
    """``clean_reactor()`` yields ``None``."""
    async with clean_reactor() as nothing:
        assert_type(nothing, None)


async def enter_scope_returns_what_the_scope_yields(test: object) -> None:
    """``enter_scope()`` returns what entering the scope gives."""
    from twisted.trial.unittest import TestCase

    assert isinstance(test, TestCase)
    port = await enter_scope(test, serving(Factory.forProtocol(Echo)))
    assert_type(port, ServingPort[Echo])
    proto = await enter_scope(test, connected(port, Factory.forProtocol(Echo)))
    assert_type(proto, Echo)
