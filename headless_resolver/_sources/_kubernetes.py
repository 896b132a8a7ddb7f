"""The EndpointSlice source: a watch per service, its changes pushed to the resolver."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable

from headless_resolver._errors import ResolutionError
from headless_resolver._kubernetes._client import ApiError, Forbidden, KubeClient
from headless_resolver._kubernetes._config import KubeConfig, KubeConfigError
from headless_resolver._kubernetes._slices import View, merge
from headless_resolver._kubernetes._watch import SliceWatch
from headless_resolver._logs import resolver_log
from headless_resolver._sources._base import Found, Listener, Missing, Outcome, Source, Target

logger = resolver_log

RESYNC = 30.0
"""The TTL given to a set: the resolver re-reads the watched slices this often (no I/O)."""


class KubernetesSource:
    """Endpoints from the Kubernetes API's EndpointSlices (``discovery.k8s.io/v1``): each
    service fetched once is listed, then watched; every change is pushed to the resolver.

    Parameters: ``config`` (``None``: in-cluster, else kubeconfig, as kubectl), ``zone`` (the
    client's zone: prefer endpoints hinted for it, see ``hints.forZones``), ``timeout``
    (connect and list timeout, and how long a first ``fetch`` waits for its list),
    ``page_limit``, ``watch_timeout`` (seconds per watch request), ``backoff``, ``rng``,
    ``client`` (a ``KubeClient`` to use instead of one made from ``config``).
    """

    kind = "kubernetes"

    def __init__(
        self,
        config: KubeConfig | None = None,
        *,
        zone: str | None = None,
        timeout: float = 10.0,
        page_limit: int = 500,
        watch_timeout: int = 300,
        backoff: tuple[float, float] = (0.2, 5.0),
        rng: random.Random | None = None,
        client: KubeClient | None = None,
    ) -> None:
        if client is None:
            client = KubeClient(config or KubeConfig.from_environment(), timeout=timeout)
            self._owns_client = True
        else:
            self._owns_client = False
        self.client = client
        self.config = client.config
        self.zone = zone
        self._timeout = timeout
        self._page_limit = page_limit
        self._watch_timeout = watch_timeout
        self._backoff = backoff
        self._rng = rng or random.Random()
        self._watches: dict[tuple[str, str], SliceWatch] = {}
        self._targets: dict[tuple[str, str], set[Target]] = {}
        self._tasks: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._listeners: dict[int, Listener] = {}

    def __repr__(self) -> str:
        return f"<KubernetesSource {self.config.server} watches={len(self._watches)}>"

    @property
    def watches(self) -> dict[tuple[str, str], SliceWatch]:
        """The running watches by (namespace, service), for inspection."""
        return dict(self._watches)

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        key = id(listener)
        self._listeners[key] = listener
        return lambda: self._listeners.pop(key, None) and None

    async def fetch(self, target: Target) -> Outcome:
        key = (target.service.namespace, target.service.service)
        watch = self._watches.get(key)
        if watch is None:
            watch = self._start(key)
        self._targets[key].add(target)
        if not watch.listed.is_set():
            try:
                async with asyncio.timeout(self._timeout):
                    await watch.listed.wait()
            except TimeoutError:
                raise ResolutionError(
                    f"{target.name}: no EndpointSlice list within {self._timeout} s",
                    name=target.name,
                    reason="TIMEOUT",
                ) from None
        if watch.error is not None:
            # The slices may be out of date: let the resolver serve its last set as stale.
            raise watch.error
        return self.outcome(watch, target)

    def outcome(self, watch: SliceWatch, target: Target) -> Outcome:
        """What the watched slices say about ``target`` now."""
        service = f"{watch.service}.{watch.namespace}"
        if not watch.slices:
            return Missing(f"{service}: no EndpointSlices (no such service, or no selector)", None)
        port = target.port
        view = View(port, target.proto, target.service.pod, self.zone)
        endpoints, has_port = merge(watch.slices.values(), view)
        if not has_port:
            return Missing(f"{service}: no port named {port!r} ({target.proto})", None)
        if not endpoints:
            what = f"pod {target.service.pod}" if target.service.pod else "ready or serving pod"
            return Missing(f"{service}: no {what} in its EndpointSlices", None)
        return Found(endpoints, RESYNC)

    async def aclose(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self._watches.clear()
        if self._owns_client:
            await self.client.aclose()

    def _start(self, key: tuple[str, str]) -> SliceWatch:
        watch = SliceWatch(
            self.client,
            *key,
            on_change=self._changed,
            on_failure=self._failed,
            page_limit=self._page_limit,
            watch_timeout=self._watch_timeout,
            backoff=self._backoff,
            rng=self._rng,
        )
        self._watches[key] = watch
        self._targets[key] = set()
        task = asyncio.get_running_loop().create_task(watch.run(), name=f"watch {key[1]}.{key[0]}")
        self._tasks[key] = task
        return watch

    def _changed(self, watch: SliceWatch) -> None:
        for target in self._targets.get((watch.namespace, watch.service), ()):
            outcome = self.outcome(watch, target)
            for listener in list(self._listeners.values()):
                listener(target, outcome)

    def _failed(self, watch: SliceWatch, error: ApiError) -> None:
        for target in self._targets.get((watch.namespace, watch.service), ()):
            for listener in list(self._listeners.values()):
                listener(target, error)


class AutoSource:
    """The Kubernetes API when it answers and RBAC allows reading slices, else DNS.

    Decided at the first fetch (and logged); ``kind`` says which was chosen (``"auto"``
    until then), and ``reason`` why DNS was, if it was.
    """

    def __init__(self, kubernetes: Callable[[], KubernetesSource], dns: Source) -> None:
        self._make_kubernetes = kubernetes
        self._kubernetes: KubernetesSource | None = None
        self._dns = dns
        self._chosen: Source | None = None
        self._deciding = asyncio.Lock()
        self._listeners: dict[int, Listener] = {}
        self._unsubscribe: list[Callable[[], None]] = []
        self.reason: str | None = None

    @property
    def kind(self) -> str:
        return "auto" if self._chosen is None else self._chosen.kind

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners[id(listener)] = listener
        self._unsubscribe.append(self._dns.subscribe(listener))

        def unsubscribe() -> None:
            for undo in self._unsubscribe:
                undo()

        return unsubscribe

    async def fetch(self, target: Target) -> Outcome:
        if self._chosen is None:
            async with self._deciding:
                if self._chosen is None:
                    return await self._decide(target)
        return await self._chosen.fetch(target)

    async def _decide(self, target: Target) -> Outcome:
        try:
            kubernetes = self._kubernetes = self._make_kubernetes()
        except KubeConfigError as error:
            return await self._fall_back(target, str(error))
        for listener in self._listeners.values():
            self._unsubscribe.append(kubernetes.subscribe(listener))
        try:
            outcome = await kubernetes.fetch(target)
        except (Forbidden, ApiError) as error:
            return await self._fall_back(target, str(error))
        except ResolutionError as error:  # no list in time
            return await self._fall_back(target, str(error))
        self._chosen = kubernetes
        logger.info("source: Kubernetes API at %s (%s)", kubernetes.config.server, target.name)
        return outcome

    async def _fall_back(self, target: Target, reason: str) -> Outcome:
        self.reason = reason
        self._chosen = self._dns
        logger.warning("source: DNS, the Kubernetes API is not usable: %s", reason)
        if self._kubernetes is not None:
            with contextlib.suppress(Exception):
                await self._kubernetes.aclose()
            self._kubernetes = None
        return await self._dns.fetch(target)

    async def aclose(self) -> None:
        if self._kubernetes is not None:
            await self._kubernetes.aclose()
        await self._dns.aclose()
