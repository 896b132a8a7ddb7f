"""Real DNS servers for tests, fed from the service model in ``headless_resolver.testing``."""

from tests.servers._base import (
    AuthoritativeServer,
    ServerFactory,
    ServerFailed,
    ServerUnavailable,
    free_port,
    query,
    skip_or_fail,
)
from tests.servers.bind import BindServer
from tests.servers.knot import KnotServer

__all__ = [
    "AuthoritativeServer",
    "BindServer",
    "KnotServer",
    "ServerFactory",
    "ServerFailed",
    "ServerUnavailable",
    "free_port",
    "query",
    "skip_or_fail",
]
