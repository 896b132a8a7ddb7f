"""Where the Kubernetes API is and how to authenticate, found as kubectl finds it.

In a pod: ``KUBERNETES_SERVICE_HOST``/``_PORT`` and the service account's token, CA and
namespace files (the token is re-read when it changes on disk: kubelet rotates it). Outside a
pod: ``KUBECONFIG`` (files separated by ``:``, the first to set a value wins), else
``~/.kube/config``; its current context gives the server, the CA, a token (or token file) or a
client certificate, and the namespace. An ``http://`` server is used as is (for tests).
"""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from headless_resolver._errors import HeadlessResolverError

_SECTIONS = (("clusters", "cluster"), ("users", "user"), ("contexts", "context"))
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class KubeConfigError(HeadlessResolverError):
    """No usable Kubernetes API configuration: not in a pod, and no (valid) kubeconfig."""


class TokenFile:
    """A bearer token read from a file, read again whenever the file changes (rotation)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[int, int] | None = None
        self._token = ""

    def read(self) -> str:
        try:
            stat = self.path.stat()
            seen = (stat.st_mtime_ns, stat.st_size)
            if seen != self._seen:
                self._token = self.path.read_text(encoding="utf-8").strip()
                self._seen = seen
        except OSError as error:
            if not self._token:
                raise KubeConfigError(f"cannot read token file {self.path}: {error}") from None
        return self._token


@dataclass(frozen=True)
class KubeConfig:
    """How to reach the API server: ``server`` URL, TLS trust and identity, default namespace.

    Parameters: ``server`` (``https://host:port`` or ``http://`` for a local stand-in),
    ``namespace``, ``token`` or ``token_file`` (bearer), ``ca_file`` / ``ca_data`` (PEM),
    ``client_cert`` / ``client_key`` (paths), ``insecure`` (skip server verification, as
    kubeconfig's ``insecure-skip-tls-verify``), ``origin`` (where this was read, for messages).
    """

    server: str
    namespace: str = "default"
    token: str | None = None
    token_file: TokenFile | None = field(default=None, compare=False)
    ca_file: str | None = None
    ca_data: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    insecure: bool = False
    origin: str = "arguments"

    def bearer(self) -> str | None:
        """The token to send now (a rotated token file is read again)."""
        if self.token_file is not None:
            return self.token_file.read()
        return self.token

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for an ``https://`` server; None for ``http://``."""
        if not self.server.startswith("https://"):
            return None
        if self.insecure:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        else:
            context = ssl.create_default_context(cafile=self.ca_file, cadata=self.ca_data)
        if self.client_cert is not None:
            context.load_cert_chain(self.client_cert, self.client_key)
        return context

    @classmethod
    def in_cluster(
        cls,
        environ: Mapping[str, str] = os.environ,
        directory: Path = SERVICE_ACCOUNT_DIR,
    ) -> KubeConfig:
        """The pod's service account, as client-go's ``rest.InClusterConfig``."""
        host = environ.get("KUBERNETES_SERVICE_HOST")
        port = environ.get("KUBERNETES_SERVICE_PORT", "443")
        token = directory / "token"
        if not host or not token.exists():
            raise KubeConfigError(
                "not in a pod: KUBERNETES_SERVICE_HOST unset or no service account token"
            )
        namespace_file = directory / "namespace"
        namespace = (
            namespace_file.read_text(encoding="utf-8").strip() if namespace_file.exists() else ""
        )
        netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        ca = directory / "ca.crt"
        return cls(
            server=f"https://{netloc}",
            namespace=namespace or "default",
            token_file=TokenFile(token),
            ca_file=str(ca) if ca.exists() else None,
            origin="in-cluster service account",
        )

    @classmethod
    def from_kubeconfig(cls, paths: str | None = None, *, context: str | None = None) -> KubeConfig:
        """The current (or named) context of ``paths`` (``:``-separated, as ``KUBECONFIG``)."""
        if paths is None:
            paths = os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
        files = [Path(p).expanduser() for p in paths.split(os.pathsep) if p]
        merged: dict[str, Any] = {"clusters": {}, "users": {}, "contexts": {}}
        current: str | None = None
        for path in files:
            if not path.exists():
                continue
            document = _load(path)
            current = current or document.get("current-context") or None
            for section, key in (
                ("clusters", "cluster"),
                ("users", "user"),
                ("contexts", "context"),
            ):
                for item in document.get(section) or ():
                    if isinstance(item, dict) and "name" in item:
                        entry = dict(item.get(key) or {})
                        entry["_dir"] = str(path.parent)
                        merged[section].setdefault(item["name"], entry)
        origin = ", ".join(map(str, files)) or paths
        name = context or current
        if not name:
            raise KubeConfigError(f"no current context in kubeconfig {origin}")
        ctx = merged["contexts"].get(name)
        if ctx is None:
            raise KubeConfigError(f"kubeconfig {origin}: no context {name!r}")
        cluster = merged["clusters"].get(ctx.get("cluster"))
        if cluster is None or not cluster.get("server"):
            raise KubeConfigError(f"kubeconfig {origin}: context {name!r} has no cluster server")
        user = merged["users"].get(ctx.get("user"), {})
        server = str(cluster["server"]).rstrip("/")
        token_file = _relative(user, "tokenFile")
        return cls(
            server=server,
            namespace=ctx.get("namespace") or "default",
            token=user.get("token"),
            token_file=TokenFile(Path(token_file)) if token_file else None,
            ca_file=_relative(cluster, "certificate-authority"),
            ca_data=_decoded(cluster.get("certificate-authority-data")),
            client_cert=_relative(user, "client-certificate")
            or _written(user.get("client-certificate-data")),
            client_key=_relative(user, "client-key") or _written(user.get("client-key-data")),
            insecure=bool(cluster.get("insecure-skip-tls-verify")),
            origin=f"kubeconfig {origin}, context {name}",
        )

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> KubeConfig:
        """In-cluster when in a pod, else the kubeconfig, as kubectl decides."""
        if environ.get("KUBERNETES_SERVICE_HOST") and not environ.get("KUBECONFIG"):
            try:
                return cls.in_cluster(environ)
            except KubeConfigError:
                pass
        return cls.from_kubeconfig(environ.get("KUBECONFIG"))


def _load(path: Path) -> dict[str, Any]:
    try:
        import yaml
    except ImportError:  # pragma: no cover - the "kubernetes" extra installs it
        raise KubeConfigError(
            f"reading {path} needs PyYAML: pip install 'headless-resolver[kubernetes]'"
        ) from None
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise KubeConfigError(f"cannot read kubeconfig {path}: {error}") from None
    if not isinstance(document, dict):
        raise KubeConfigError(f"kubeconfig {path} is not a mapping")
    return document


def _relative(section: Mapping[str, Any], key: str) -> str | None:
    """A path from the kubeconfig, relative to the file that named it (as kubectl reads it)."""
    value = section.get(key)
    if not value:
        return None
    return str(Path(section["_dir"]) / Path(str(value)).expanduser())


def _decoded(data: object) -> str | None:
    return base64.b64decode(str(data)).decode() if data else None


def _written(data: object) -> str | None:
    """Inline client certificate data, written to a private file (ssl loads only files)."""
    if not data:
        return None
    handle, path = tempfile.mkstemp(prefix="headless-resolver-", suffix=".pem")
    with os.fdopen(handle, "wb") as file:
        file.write(base64.b64decode(str(data)))
    return path
