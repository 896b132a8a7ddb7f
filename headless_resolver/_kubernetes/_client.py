"""A small EndpointSlice client on httpx: list (paged) and watch, errors typed by status.

Only what the watch needs: ``list_slices`` and ``watch_slices`` of one service's slices in one
namespace, with the bearer token read at each request (so a rotated token is picked up).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Generator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from headless_resolver._errors import ResolutionError
from headless_resolver._kubernetes._config import KubeConfig
from headless_resolver._kubernetes._slices import SERVICE_NAME_LABEL

SLICES_PATH = "/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices"


class ApiError(ResolutionError):
    """The API server answered with an error status (``status``), or could not be reached
    (``status`` None)."""

    def __init__(self, message: str, *, status: int | None = None, name: str | None = None):
        super().__init__(message, name=name, reason="API_STATUS" if status else "NETWORK")
        self.status = status


class Gone(ApiError):
    """410: the resourceVersion (or continue token) is older than the server keeps; re-list."""


class Forbidden(ApiError):
    """401 or 403: the credentials are not valid, or RBAC does not allow reading slices."""


@dataclass(frozen=True, slots=True)
class SliceList:
    items: list[dict[str, Any]]
    resource_version: str
    continue_token: str | None


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: str
    """ADDED, MODIFIED, DELETED or BOOKMARK (ERROR events are raised)."""
    object: dict[str, Any]

    @property
    def resource_version(self) -> str:
        return str((self.object.get("metadata") or {}).get("resourceVersion", ""))


class _Bearer(httpx.Auth):
    def __init__(self, config: KubeConfig) -> None:
        self._config = config

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self._config.bearer()
        if token:
            request.headers["Authorization"] = f"Bearer {token}"
        yield request


class KubeClient:
    """Lists and watches EndpointSlices. Parameters: ``config``, ``timeout`` (connect and
    list read timeout, seconds), ``transport`` (an httpx transport, for tests)."""

    def __init__(
        self,
        config: KubeConfig,
        *,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = config
        self._timeout = timeout
        context = config.ssl_context()
        self._http = httpx.AsyncClient(
            base_url=config.server,
            auth=_Bearer(config),
            verify=context if context is not None else True,
            timeout=timeout,
            transport=transport,
            headers={"Accept": "application/json", "User-Agent": "headless-resolver"},
            trust_env=False,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def list_slices(
        self, namespace: str, service: str, *, limit: int = 500, continue_token: str | None = None
    ) -> SliceList:
        """One page of the service's slices."""
        params: dict[str, str | int] = {"labelSelector": _selector(service), "limit": limit}
        if continue_token:
            params["continue"] = continue_token
        try:
            response = await self._http.get(_path(namespace), params=params)
        except httpx.HTTPError as error:
            raise _unreachable(self.config, error) from None
        if response.status_code != 200:
            raise _status_error(response.status_code, _json(response.content))
        document = _json(response.content)
        metadata = document.get("metadata") or {}
        return SliceList(
            list(document.get("items") or ()),
            str(metadata.get("resourceVersion", "")),
            metadata.get("continue") or None,
        )

    async def watch_slices(
        self,
        namespace: str,
        service: str,
        resource_version: str,
        *,
        timeout_seconds: int = 300,
        on_open: Callable[[], None] = lambda: None,
    ) -> AsyncIterator[WatchEvent]:
        """Events after ``resource_version`` until the server ends the stream
        (``timeout_seconds``); raises Gone on a 410 status or ERROR event. ``on_open`` is
        called once the server accepted the watch."""
        params: dict[str, str | int] = {
            "labelSelector": _selector(service),
            "watch": 1,
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": timeout_seconds,
        }
        timeout = httpx.Timeout(self._timeout, read=timeout_seconds + self._timeout)
        try:
            async with self._http.stream(
                "GET", _path(namespace), params=params, timeout=timeout
            ) as response:
                if response.status_code != 200:
                    raise _status_error(response.status_code, _json(await response.aread()))
                on_open()
                async for line in response.aiter_lines():
                    if not line.strip():
                        continue
                    event = _json(line.encode())
                    kind = event.get("type")
                    obj = event.get("object") or {}
                    if kind == "ERROR":
                        raise _status_error(int(obj.get("code") or 500), obj)
                    if kind not in ("ADDED", "MODIFIED", "DELETED", "BOOKMARK"):
                        raise ApiError(f"watch: unknown event type {kind!r}")
                    yield WatchEvent(str(kind), obj)
        except httpx.HTTPError as error:
            raise _unreachable(self.config, error) from None


def _path(namespace: str) -> str:
    return SLICES_PATH.format(namespace=quote(namespace, safe=""))


def _selector(service: str) -> str:
    return f"{SERVICE_NAME_LABEL}={service}"


def _json(content: bytes) -> dict[str, Any]:
    try:
        document = json.loads(content)
    except ValueError:
        raise ApiError(f"the API server sent no JSON: {content[:80]!r}") from None
    if not isinstance(document, dict):
        raise ApiError("the API server sent JSON that is not an object")
    return document


def _status_error(status: int, body: Mapping[str, Any]) -> ApiError:
    message = f"HTTP {status}: {body.get('message') or body.get('reason') or 'error'}"
    if status == 410:
        return Gone(message, status=status)
    if status in (401, 403):
        return Forbidden(message, status=status)
    return ApiError(message, status=status)


def _unreachable(config: KubeConfig, error: httpx.HTTPError) -> ApiError:
    detail = str(error) or type(error).__name__
    return ApiError(f"Kubernetes API {config.server} unreachable: {detail}")
