"""A Kubernetes API stand-in serving EndpointSlices with the API's list and watch semantics.

What a client can rely on from a real API server, and what this one does:

- every change gets the next ``resourceVersion`` (one counter for the whole server);
- list (``labelSelector``, ``fieldSelector=metadata.name=``, ``limit``/``continue``): each page
  comes from one snapshot taken at the first page; a continue token older than the kept history
  answers ``410 Gone``;
- watch (``watch=1``) from a ``resourceVersion``: the events after it, then live ones; a
  version older than the kept history (``history`` events, or ``compact()``) gets an ``ERROR``
  event with a ``410`` Status, as the watch cache answers; no version (or ``0``) starts with
  synthetic ``ADDED`` events for what exists; ``allowWatchBookmarks=true`` gets ``BOOKMARK``
  events every ``bookmark_interval``; the stream ends after ``timeoutSeconds`` (or
  ``watch_timeout``);
- a bearer token is required (``401`` otherwise); one without RBAC (``tokens[t] = False``) gets
  ``403`` for slices, as a service account without a Role would;
- discovery (``/api``, ``/apis``, ``/apis/discovery.k8s.io/v1``, ``/version``) for kubectl.

Faults for tests: ``drop_watches()`` cuts every open watch, ``stop()``/``start()`` make an
outage (the same port comes back), ``compact()`` forgets history.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import ssl
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["KubernetesAPI", "SliceEndpoint"]

GROUP = "discovery.k8s.io"
API_VERSION = f"{GROUP}/v1"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
_PREFIX = f"/apis/{API_VERSION}"
_MAX_HEADER = 64 * 1024


@dataclass(frozen=True, slots=True)
class SliceEndpoint:
    """One endpoint as an EndpointSlice carries it. ``None`` conditions are left out of the
    object (the API's nil); the EndpointSlice controller sets all three, so those are the
    defaults for ``ready``."""

    ip: str
    hostname: str | None = None
    pod: str | None = None
    ready: bool | None = True
    serving: bool | None = True
    terminating: bool | None = False
    zone: str | None = None
    node_name: str | None = None
    for_zones: tuple[str, ...] | None = None

    def to_json(self, namespace: str) -> dict[str, Any]:
        conditions = {
            key: value
            for key, value in (
                ("ready", self.ready),
                ("serving", self.serving),
                ("terminating", self.terminating),
            )
            if value is not None
        }
        item: dict[str, Any] = {"addresses": [self.ip], "conditions": conditions}
        if self.hostname:
            item["hostname"] = self.hostname
        if self.pod:
            item["targetRef"] = {"kind": "Pod", "namespace": namespace, "name": self.pod}
        if self.node_name:
            item["nodeName"] = self.node_name
        if self.zone:
            item["zone"] = self.zone
        if self.for_zones is not None:
            item["hints"] = {"forZones": [{"name": z} for z in self.for_zones]}
        return item


@dataclass(slots=True)
class _Event:
    version: int
    type: str
    object: dict[str, Any]


class _Watcher:
    def __init__(self, namespace: str | None, selector: Mapping[str, str], name: str | None):
        self.namespace = namespace
        self.selector = selector
        self.name = name
        self.queue: asyncio.Queue[_Event | None] = asyncio.Queue()

    def wants(self, obj: Mapping[str, Any]) -> bool:
        return _matches(obj, self.namespace, self.selector, self.name)


class _HttpError(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason


class KubernetesAPI:
    """An API server on loopback holding EndpointSlices. Async context manager.

    Parameters: ``host``, ``port`` (0: a free one, kept across ``stop()``/``start()``),
    ``tokens`` (bearer token -> whether it may read slices; ``None``: no authentication),
    ``history`` (events kept for watches to resume from), ``bookmark_interval``,
    ``watch_timeout`` (longest watch, seconds), ``max_per_slice`` (endpoints per slice that
    ``set_endpoints`` creates, 100 as the EndpointSlice controller), ``tls`` (serve HTTPS
    with a throwaway CA, ``ca_cert``: kubectl sends a token only over TLS).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tokens: Mapping[str, bool] | None = None,
        history: int = 1000,
        bookmark_interval: float = 1.0,
        watch_timeout: float = 1800.0,
        max_per_slice: int = 100,
        tls: bool = False,
    ) -> None:
        self.host = host
        self.tls = tls
        self.ca_cert: Path | None = None
        """With ``tls``: the PEM of the CA that signed the server's certificate."""
        self._ssl: ssl.SSLContext | None = None
        self.port = port
        self.tokens: dict[str, bool] | None = (
            {"test-token": True} if tokens is None else dict(tokens)
        )
        self.history = history
        self.bookmark_interval = bookmark_interval
        self.watch_timeout = watch_timeout
        self.max_per_slice = max_per_slice
        self.resource_version = 1
        self.requests: list[tuple[str, str]] = []
        """(path, query) of every request served, for tests."""
        self._objects: dict[tuple[str, str], dict[str, Any]] = {}
        self._events: list[_Event] = []
        self._compacted = 1
        """Watches and continue tokens from before this version get 410."""
        self._snapshots: dict[str, tuple[int, list[dict[str, Any]], int]] = {}
        self._watchers: set[_Watcher] = set()
        self._placement: dict[tuple[str, str], dict[str, list[SliceEndpoint]]] = {}
        """The endpoints of each slice ``set_endpoints`` made, by service, then slice name."""
        self._families: dict[str, str] = {}
        """The address type (IPv4, IPv6) of each slice ``set_endpoints`` made."""
        self._ports: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._names = itertools.count(1)

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def server(self) -> str:
        """``http://host:port``: the kubeconfig ``server``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    @property
    def token(self) -> str:
        """A token that may read slices."""
        assert self.tokens is not None
        return next(t for t, allowed in self.tokens.items() if allowed)

    async def start(self) -> None:
        if self.tls and self._ssl is None:
            from headless_resolver.testing._pods import CertificateAuthority

            authority = CertificateAuthority()
            self.ca_cert = authority.ca_cert
            self._ssl = authority.server_context_factory([self.host, "localhost"])()
        self._server = await asyncio.start_server(
            self._serve, self.host, self.port, limit=_MAX_HEADER, ssl=self._ssl
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and cut every connection (an outage); ``start()`` brings it back."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for watcher in list(self._watchers):
            watcher.queue.put_nowait(None)
        for writer in list(self._connections):
            writer.transport.abort()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    async def __aenter__(self) -> KubernetesAPI:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def kubeconfig(
        self, path: str | Path, *, token: str | None = None, namespace: str = "default"
    ) -> Path:
        """Write a kubeconfig (JSON, which is YAML) whose current context is this server."""
        cluster: dict[str, Any] = {"server": self.server}
        if self.ca_cert is not None:
            cluster["certificate-authority"] = str(self.ca_cert)
        user: dict[str, Any] = {}
        if self.tokens is not None:
            user["token"] = token or self.token
        document = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "stand-in", "cluster": cluster}],
            "users": [{"name": "client", "user": user}],
            "contexts": [
                {
                    "name": "stand-in",
                    "context": {"cluster": "stand-in", "user": "client", "namespace": namespace},
                }
            ],
            "current-context": "stand-in",
        }
        target = Path(path)
        target.write_text(json.dumps(document, indent=2))
        return target

    # -- state ---------------------------------------------------------------------------------

    def set_endpoints(
        self,
        service: str,
        namespace: str = "default",
        *,
        endpoints: Iterable[SliceEndpoint],
        ports: Sequence[tuple[str, str, int]] = (("http", "TCP", 8080),),
    ) -> None:
        """Publish ``endpoints`` as the service's slices, as the EndpointSlice controller does:
        an endpoint stays in the slice it is in, new ones fill slices with room, then new
        slices; only slices whose content changed get a new version (one event each)."""
        key = (namespace, service)
        wanted = {e.ip: e for e in endpoints}
        port_list = [{"name": n, "protocol": p.upper(), "port": number} for n, p, number in ports]
        ports_changed = self._ports.get(key) != port_list
        self._ports[key] = port_list
        placement = self._placement.setdefault(key, {})
        changed: set[str] = set()
        placed: set[str] = set()
        for name, members in placement.items():
            kept = [wanted[e.ip] for e in members if e.ip in wanted]
            if kept != members or ports_changed:
                changed.add(name)
            placement[name] = kept
            placed.update(e.ip for e in kept)
        for endpoint in wanted.values():
            if endpoint.ip in placed:
                continue
            family = _family(endpoint.ip)
            room = next(
                (
                    n
                    for n, members in placement.items()
                    if self._families[n] == family and len(members) < self.max_per_slice
                ),
                None,
            )
            if room is None:
                room = f"{service}-{next(self._names):05x}"  # as generateName gives it
                placement[room] = []
                self._families[room] = family
            placement[room].append(endpoint)
            changed.add(room)
        for name in sorted(changed):
            members = placement[name]
            if not members:
                del placement[name]
                self.delete_slice(name, namespace)
                continue
            self.put_slice(
                namespace,
                {
                    "metadata": {
                        "name": name,
                        "labels": {
                            SERVICE_NAME_LABEL: service,
                            "endpointslice.kubernetes.io/managed-by": "endpointslice-controller",
                        },
                    },
                    "addressType": self._families[name],
                    "endpoints": [e.to_json(namespace) for e in members],
                    "ports": port_list,
                },
            )

    def remove_service(self, service: str, namespace: str = "default") -> None:
        """Delete the service's slices."""
        for name in list(self._placement.pop((namespace, service), {})):
            self.delete_slice(name, namespace)
        self._ports.pop((namespace, service), None)

    def put_slice(self, namespace: str, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Create or replace one EndpointSlice (``obj`` needs ``metadata.name``); returns it as
        stored, with its new ``resourceVersion``."""
        metadata = dict(obj.get("metadata") or {})
        name = metadata["name"]
        old = self._objects.get((namespace, name))
        self.resource_version += 1
        metadata.update(
            namespace=namespace,
            resourceVersion=str(self.resource_version),
            uid=(old or {}).get("metadata", {}).get("uid") or str(uuid.uuid4()),
            generation=int((old or {}).get("metadata", {}).get("generation", 0)) + 1,
            creationTimestamp=(old or {}).get("metadata", {}).get("creationTimestamp")
            or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        )
        stored = {
            "kind": "EndpointSlice",
            "apiVersion": API_VERSION,
            **{k: v for k, v in obj.items() if k not in ("kind", "apiVersion", "metadata")},
            "metadata": metadata,
        }
        stored.setdefault("endpoints", [])
        self._objects[namespace, name] = stored
        self._record("ADDED" if old is None else "MODIFIED", stored)
        return stored

    def delete_slice(self, name: str, namespace: str = "default") -> None:
        old = self._objects.pop((namespace, name), None)
        if old is None:
            raise KeyError(f"no EndpointSlice {namespace}/{name}")
        self.resource_version += 1
        gone = {
            **old,
            "metadata": {**old["metadata"], "resourceVersion": str(self.resource_version)},
        }
        self._record("DELETED", gone)

    def slices(
        self, service: str | None = None, namespace: str = "default"
    ) -> list[dict[str, Any]]:
        """The stored slices of ``namespace`` (of ``service`` if given), by name."""
        selector = {SERVICE_NAME_LABEL: service} if service else {}
        return [
            o for _, o in sorted(self._objects.items()) if _matches(o, namespace, selector, None)
        ]

    def compact(self) -> None:
        """Forget every past event: watches and continue tokens from before now get 410."""
        self._events.clear()
        self._compacted = self.resource_version
        self._snapshots.clear()

    def drop_watches(self) -> int:
        """Cut every open watch connection, as a load balancer or apiserver restart would."""
        for watcher in list(self._watchers):
            watcher.queue.put_nowait(None)
        return len(self._watchers)

    @property
    def open_watches(self) -> int:
        return len(self._watchers)

    def _record(self, kind: str, obj: dict[str, Any]) -> None:
        event = _Event(self.resource_version, kind, obj)
        self._events.append(event)
        if len(self._events) > self.history:
            dropped = self._events[: len(self._events) - self.history]
            del self._events[: len(dropped)]
            self._compacted = dropped[-1].version
        for watcher in self._watchers:
            if watcher.wants(obj):
                watcher.queue.put_nowait(event)

    # -- HTTP ----------------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._connections.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                    break
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = [*lines[0].split(" "), "", ""][:3]
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length") or 0)
                if length:
                    await reader.readexactly(length)
                keep = await self._respond(method, target, headers, writer)
                if not keep:
                    break
            writer.close()  # what was written (a watch's last chunk) still goes out
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        except (ConnectionError, asyncio.CancelledError):
            writer.transport.abort()
        finally:
            self._handlers.discard(task)
            self._connections.discard(writer)

    async def _respond(
        self, method: str, target: str, headers: Mapping[str, str], writer: asyncio.StreamWriter
    ) -> bool:
        url = urlsplit(target)
        path = unquote(url.path).rstrip("/") or "/"
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        self.requests.append((path, url.query))
        try:
            if method != "GET":
                raise _HttpError(405, "MethodNotAllowed", f"{method} is not served here")
            discovery = _discovery(path)
            if discovery is not None:
                await _send_json(writer, 200, discovery)
                return True
            namespace, name = _slice_path(path)
            self._authorize(headers, namespace, "get" if name else "list")
            if _true(query.get("watch")):
                return await self._watch(writer, namespace, name, query)
            if name is not None:
                obj = self._objects.get((namespace or "", name))
                if obj is None:
                    raise _HttpError(404, "NotFound", f'endpointslices.{GROUP} "{name}" not found')
                await _send_json(writer, 200, obj)
            else:
                await _send_json(writer, 200, self._list(namespace, query))
        except _HttpError as error:
            await _send_json(writer, error.code, _status(error.code, error.reason, str(error)))
        return True

    def _authorize(self, headers: Mapping[str, str], namespace: str | None, verb: str) -> None:
        if self.tokens is None:
            return
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or token not in self.tokens:
            raise _HttpError(401, "Unauthorized", "Unauthorized")
        if not self.tokens[token]:
            where = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
            raise _HttpError(
                403,
                "Forbidden",
                f'endpointslices.{GROUP} is forbidden: User "system:serviceaccount:default:'
                f'client" cannot {verb} resource "endpointslices" in API group "{GROUP}"{where}',
            )

    def _list(self, namespace: str | None, query: Mapping[str, str]) -> dict[str, Any]:
        token = query.get("continue")
        if token:
            snapshot = self._snapshots.get(token)
            if snapshot is None:
                raise _HttpError(
                    410,
                    "Expired",
                    "The provided continue parameter is too old to display a consistent "
                    "list result. You can start a new list without the continue parameter.",
                )
            snapshot_version, items, offset = snapshot
        else:
            selector = _selector(query.get("labelSelector", ""))
            name = _field_name(query.get("fieldSelector", ""))
            items = [
                _list_item(o)
                for _, o in sorted(self._objects.items())
                if _matches(o, namespace, selector, name)
            ]
            snapshot_version, offset = self.resource_version, 0
        limit = int(query.get("limit") or 0)
        page = items[offset : offset + limit] if limit > 0 else items[offset:]
        metadata: dict[str, Any] = {"resourceVersion": str(snapshot_version)}
        end = offset + len(page)
        if end < len(items):
            next_token = base64.urlsafe_b64encode(
                json.dumps([snapshot_version, end]).encode()
            ).decode()
            self._snapshots[next_token] = (snapshot_version, items, end)
            metadata["continue"] = next_token
            metadata["remainingItemCount"] = len(items) - end
        return {
            "kind": "EndpointSliceList",
            "apiVersion": API_VERSION,
            "metadata": metadata,
            "items": page,
        }

    async def _watch(
        self,
        writer: asyncio.StreamWriter,
        namespace: str | None,
        name: str | None,
        query: Mapping[str, str],
    ) -> bool:
        """Stream events; True when the stream ended cleanly (the connection may be reused)."""
        selector = _selector(query.get("labelSelector", ""))
        name = name or _field_name(query.get("fieldSelector", ""))
        watcher = _Watcher(namespace, selector, name)
        start = query.get("resourceVersion", "")
        bookmarks = _true(query.get("allowWatchBookmarks"))
        timeout = min(float(query.get("timeoutSeconds") or self.watch_timeout), self.watch_timeout)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\nCache-Control: no-cache, private\r\n\r\n"
        )
        if start not in ("", "0") and not _is_int(start):
            await _send_event(writer, "ERROR", _status(400, "BadRequest", f"bad version {start}"))
            await _end_chunks(writer)
            return True
        if start not in ("", "0") and int(start) < self._compacted:
            await _send_event(
                writer,
                "ERROR",
                _status(410, "Expired", f"too old resource version: {start} ({self._compacted})"),
            )
            await _end_chunks(writer)
            return True
        # What happened up to now, taken at once with the registration: nothing is missed or
        # sent twice while the replay below waits on the socket.
        if start in ("", "0"):
            replay = [
                _Event(self.resource_version, "ADDED", obj)
                for _, obj in sorted(self._objects.items())
                if watcher.wants(obj)
            ]
        else:
            replay = [
                past
                for past in self._events
                if past.version > int(start) and watcher.wants(past.object)
            ]
        self._watchers.add(watcher)
        try:
            for past in replay:
                await _send_event(writer, past.type, past.object)
        except BaseException:
            self._watchers.discard(watcher)
            raise
        deadline = asyncio.get_running_loop().time() + timeout
        try:
            while True:
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    break
                wait = min(left, self.bookmark_interval) if bookmarks else left
                try:
                    async with asyncio.timeout(wait):
                        event = await watcher.queue.get()
                except TimeoutError:
                    if bookmarks and deadline - asyncio.get_running_loop().time() > 0:
                        await _send_event(writer, "BOOKMARK", self._bookmark())
                    continue
                if event is None:  # cut: no clean end of the chunked body
                    writer.transport.abort()
                    return False
                await _send_event(writer, event.type, event.object)
        finally:
            self._watchers.discard(watcher)
        await _end_chunks(writer)
        return True

    def _bookmark(self) -> dict[str, Any]:
        return {
            "kind": "EndpointSlice",
            "apiVersion": API_VERSION,
            "metadata": {"resourceVersion": str(self.resource_version)},
        }


def _list_item(obj: Mapping[str, Any]) -> dict[str, Any]:
    """Items of a list carry no kind/apiVersion: the list's own say what they are."""
    return {k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}


def _family(ip: str) -> str:
    return "IPv6" if ":" in ip else "IPv4"


def _true(value: str | None) -> bool:
    """A boolean query parameter as the API server reads it (Go's strconv.ParseBool)."""
    return value in ("1", "t", "T", "true", "TRUE", "True")


def _is_int(text: str) -> bool:
    return text.isdigit()


def _selector(text: str) -> dict[str, str]:
    """Equality terms (``a=b``, ``a==b``) of a label selector."""
    terms: dict[str, str] = {}
    for term in filter(None, (t.strip() for t in text.split(","))):
        key, sep, value = term.partition("=")
        if not sep or key.endswith("!"):
            raise _HttpError(400, "BadRequest", f"unsupported label selector term {term!r}")
        terms[key.strip()] = value.lstrip("=").strip()
    return terms


def _field_name(text: str) -> str | None:
    for term in filter(None, (t.strip() for t in text.split(","))):
        key, _, value = term.partition("=")
        if key != "metadata.name":
            raise _HttpError(400, "BadRequest", f"unsupported field selector {term!r}")
        return value.lstrip("=")
    return None


def _matches(
    obj: Mapping[str, Any], namespace: str | None, selector: Mapping[str, str], name: str | None
) -> bool:
    metadata = obj.get("metadata") or {}
    if namespace is not None and metadata.get("namespace") != namespace:
        return False
    if name is not None and metadata.get("name") != name:
        return False
    labels = metadata.get("labels") or {}
    return all(labels.get(k) == v for k, v in selector.items())


def _slice_path(path: str) -> tuple[str | None, str | None]:
    """``(namespace, name)`` of an EndpointSlice collection or object path."""
    parts = path.split("/")
    if path == f"{_PREFIX}/endpointslices":
        return None, None
    collection = len(parts) in (7, 8) and parts[6] == "endpointslices"
    if collection and path.startswith(f"{_PREFIX}/namespaces/"):
        return parts[5], parts[7] if len(parts) == 8 else None
    raise _HttpError(404, "NotFound", f"the server could not find the requested resource {path}")


def _discovery(path: str) -> dict[str, Any] | None:
    if path == "/version":
        return {"major": "1", "minor": "32", "gitVersion": "v1.32.0-standin", "platform": "py"}
    if path == "/api":
        return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
    if path == "/api/v1":
        return {"kind": "APIResourceList", "groupVersion": "v1", "resources": []}
    version = {"groupVersion": API_VERSION, "version": "v1"}
    if path == "/apis":
        return {
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [{"name": GROUP, "versions": [version], "preferredVersion": version}],
        }
    if path == _PREFIX:
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": API_VERSION,
            "resources": [
                {
                    "name": "endpointslices",
                    "singularName": "endpointslice",
                    "namespaced": True,
                    "kind": "EndpointSlice",
                    "verbs": ["get", "list", "watch"],
                }
            ],
        }
    return None


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


async def _send_json(writer: asyncio.StreamWriter, code: int, body: Mapping[str, Any]) -> None:
    data = json.dumps(body, separators=(",", ":")).encode()
    reason = {200: "OK", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 410: "Gone"}
    writer.write(
        f"HTTP/1.1 {code} {reason.get(code, 'Error')}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n\r\n".encode()
        + data
    )
    await writer.drain()


async def _send_event(writer: asyncio.StreamWriter, kind: str, obj: Mapping[str, Any]) -> None:
    data = json.dumps({"type": kind, "object": obj}, separators=(",", ":")).encode() + b"\n"
    writer.write(b"%x\r\n%s\r\n" % (len(data), data))
    await writer.drain()


async def _end_chunks(writer: asyncio.StreamWriter) -> None:
    writer.write(b"0\r\n\r\n")
    with contextlib.suppress(ConnectionError):
        await writer.drain()
