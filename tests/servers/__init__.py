"""Real DNS servers for tests, fed from the service model in ``headless_resolver.testing``."""

from tests.servers._base import (
    AuthoritativeServer,
    ServerFailed,
    ServerUnavailable,
    free_port,
    query,
)
from tests.servers.bind import BindServer
from tests.servers.knot import KnotServer

__all__ = [
    "AuthoritativeServer",
    "BindServer",
    "KnotServer",
    "ServerFailed",
    "ServerUnavailable",
    "free_port",
    "query",
]
