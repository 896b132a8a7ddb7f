"""Routes: how requests for one URL origin reach pods, and the request each pod is sent."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass

import httpx

from headless_resolver._endpoints import Endpoint, EndpointSet

DEFAULT_PORTS = {"http": 80, "https": 443}
_ROUTE_CACHE_SIZE = 1024
_NO_SET = EndpointSet("", version=-1)

PoolKey = tuple[str, int, str]
"""(pod IP, port, TLS server name): one connection pool each."""


@dataclass(slots=True, eq=False)
class Route:
    """How requests for one ``(scheme, host, port)`` reach pods; also remembers the last set."""

    host: str
    """The host as written in the URL: what is resolved, sent as TLS server name and in Host."""
    port_name: str | None
    """SRV port name to resolve (``_<port_name>._tcp``), or None for A/AAAA."""
    default_port: int
    """Port used for endpoints without one (A/AAAA answers): the URL's port or the scheme's."""
    endpoints: EndpointSet = _NO_SET
    """The last set requests of this route were sent to."""
    version: int = -1
    """``endpoints.version``, read on every request."""

    def pool_key(self, endpoint: Endpoint) -> PoolKey:
        port = endpoint.port if endpoint.port is not None else self.default_port
        return (endpoint.ip, port, self.host)


class Routes:
    """The route of each URL origin, or None to pass it through; made once per origin.

    ``matches`` says which hosts go to pods (``host_matcher()``), ``ports`` which of them take
    their port from SRV (``port_rules()``); ``lock`` guards the table (a no-op one in async).
    """

    def __init__(
        self,
        matches: Callable[[str], bool],
        ports: Mapping[str, str],
        srv_from_scheme: bool,
        lock: AbstractContextManager[object],
    ) -> None:
        self._matches = matches
        self._ports = ports
        self._srv_from_scheme = srv_from_scheme
        self._lock = lock
        self._routes: dict[tuple[str, str, int | None], Route | None] = {}

    def route(self, url: httpx.URL) -> Route | None:
        key = (url.scheme, url.host, url.port)
        try:
            return self._routes[key]
        except KeyError:
            pass
        route = self._new_route(*key)
        with self._lock:
            if len(self._routes) >= _ROUTE_CACHE_SIZE:  # many pass-through hosts
                self._routes = {k: r for k, r in self._routes.items() if r is not None}
            return self._routes.setdefault(key, route)

    def _new_route(self, scheme: str, host: str, port: int | None) -> Route | None:
        if not host or not self._matches(host):
            return None
        port_name = None
        if port is None:
            port_name = self._ports.get(host)
            if port_name is None and self._srv_from_scheme:
                port_name = scheme
        default_port = port if port is not None else DEFAULT_PORTS.get(scheme, 80)
        return Route(host, port_name, default_port)

    def sharing_host(self, route: Route) -> Iterator[Route]:
        """The other routes to the same host (call with the lock held)."""
        for other in self._routes.values():
            if other is not None and other is not route and other.host == route.host:
                yield other

    def clear(self) -> None:
        with self._lock:
            self._routes.clear()


def pod_request(request: httpx.Request, route: Route, endpoint: Endpoint) -> httpx.Request:
    """A new request to the pod's address; Host and TLS server name stay the service's.

    The caller's request is left untouched, so redirects and cookies keep following the
    service name.
    """
    port = endpoint.port if endpoint.port is not None else route.default_port
    pod = httpx.Request(
        request.method,
        pod_url(request.url, endpoint.ip, port),
        headers=request.headers,
        stream=request.stream,
        extensions=request.extensions,
    )
    pod.extensions["sni_hostname"] = route.host  # a copy: the caller's extensions stay as they are
    return pod


def pod_url(url: httpx.URL, ip: str, port: int) -> httpx.URL:
    """``url.copy_with(host=ip, port=port)`` without re-validating every other component.

    ``copy_with`` parses the whole URL again (~25 us, most of this module's per-request cost);
    the IP and port come from an ``Endpoint``, which has validated them already.
    """
    ref = url._uri_reference
    port_or_none = None if port == DEFAULT_PORTS.get(ref.scheme) else port
    copy = httpx.URL.__new__(httpx.URL)
    # positional: a named tuple's ``_replace`` costs four times as much
    copy._uri_reference = type(ref)(
        ref.scheme, ref.userinfo, ip, port_or_none, ref.path, ref.query, ref.fragment
    )
    return copy
