"""The ``headless-resolver`` command: resolve or watch a headless Service, or run the demo."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime
from typing import Any, TextIO

from headless_resolver import (
    Endpoint,
    EndpointSet,
    HeadlessResolver,
    HeadlessResolverError,
    InvalidArgument,
    InvalidServiceName,
    NoEndpointsAvailable,
    ResolutionError,
    ServiceNotFound,
    __version__,
)
from headless_resolver._names import check_port, parse_nameserver
from headless_resolver._sources import SOURCE_KINDS

PROG = "headless-resolver"
NAMESERVER_ENV = "HEADLESS_NAMESERVER"

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_RESOLUTION = 4
EXIT_NO_ENDPOINTS = 5
EXIT_INTERRUPTED = 130

EXIT_CODES: tuple[tuple[int, str], ...] = (
    (EXIT_OK, "success (watch, top: also after Ctrl-C)"),
    (EXIT_ERROR, "any other error of the library"),
    (EXIT_USAGE, "usage error: bad option, invalid service name or nameserver"),
    (EXIT_NOT_FOUND, "not found: NXDOMAIN, no such named port, or no ready pod"),
    (EXIT_RESOLUTION, "resolution error: timeout, SERVFAIL/REFUSED, nameserver unreachable"),
    (EXIT_NO_ENDPOINTS, "no endpoint available: every pod failed"),
    (EXIT_INTERRUPTED, "resolve or demo interrupted with Ctrl-C"),
)

# Most specific first: InvalidServiceName is also a ValueError.
_ERROR_EXITS: tuple[tuple[type[BaseException], int, str], ...] = (
    (InvalidServiceName, EXIT_USAGE, "invalid name"),
    (InvalidArgument, EXIT_USAGE, "invalid argument"),
    (ServiceNotFound, EXIT_NOT_FOUND, "not found"),
    (ResolutionError, EXIT_RESOLUTION, "resolution failed"),
    (NoEndpointsAvailable, EXIT_NO_ENDPOINTS, "no endpoint available"),
    (HeadlessResolverError, EXIT_ERROR, "error"),
)

_COMMON_EPILOG = "exit codes:\n" + "\n".join(f"  {code:<4}{text}" for code, text in EXIT_CODES)

_RESOLVE_EXAMPLES = """\
examples:
  headless-resolver resolve web.default.svc.cluster.local
  headless-resolver resolve web --port http --json
  headless-resolver resolve web-0.web.db --nameserver 10.96.0.10
  HEADLESS_NAMESERVER=127.0.0.1:5353 headless-resolver resolve web
  headless-resolver resolve web --port http --source kubernetes --json
"""

_WATCH_EXAMPLES = """\
examples:
  headless-resolver watch web.default.svc.cluster.local --port http
  headless-resolver watch web --json | jq .added
  headless-resolver watch web --port http --source auto
"""

_TOP_EXAMPLES = """\
examples:
  headless-resolver top web --port http
  headless-resolver top web.default.svc.cluster.local --interval 5 > top.log

On a terminal the view is redrawn in place; otherwise one line per interval is printed.
"""

_DEMO_EXAMPLES = """\
examples:
  headless-resolver demo
  headless-resolver demo --pods 5 --seconds 20

The demo starts an in-process cluster DNS and pods on 127.0.0.x (no root, no cluster),
sends traffic through each strategy and through plain httpx, scales the service up and down,
and prints requests per pod, latency percentiles, errors and how long new pods waited.
"""


def _nameserver(value: str) -> str:
    """Check ``IP``, ``IP:PORT`` or ``[IPv6]:PORT`` here, so a typo is a usage error."""
    try:
        host, _ = parse_nameserver(value)
        ipaddress.ip_address(host)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{value!r} is not IP or IP:PORT ({error})") from None
    return value


def _port(value: str) -> str | int:
    """A port name (SRV lookup) or a number (set on every address), checked here so that a
    bad port is reported as the port's fault, not the name's."""
    try:
        port = check_port(int(value) if value.isdigit() else value)
    except InvalidArgument as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    assert port is not None
    return port


def _positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(value: str) -> Any:
        try:
            number = kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
        if number <= 0:
            raise argparse.ArgumentTypeError(f"{value!r} is not positive")
        return number

    return parse


def _add_resolver_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="service name: svc, svc.ns, svc.ns.svc.cluster.local, pod.svc")
    parser.add_argument(
        "--port",
        type=_port,
        help="named port (e.g. http: SRV lookup, gives ports and pod names) or a number",
    )
    parser.add_argument("--proto", default="tcp", choices=("tcp", "udp", "sctp"))
    parser.add_argument(
        "--nameserver",
        action="append",
        type=_nameserver,
        help=f"HOST[:PORT], repeatable (default: ${NAMESERVER_ENV}, else /etc/resolv.conf)",
    )
    parser.add_argument("--backend", default="dnspython", choices=("dnspython", "aiodns"))
    parser.add_argument(
        "--source",
        default="dns",
        choices=SOURCE_KINDS,
        help="where endpoints come from: cluster DNS, the Kubernetes API's EndpointSlices "
        "(in a pod: its service account; else $KUBECONFIG or ~/.kube/config), or auto: "
        "the API if it answers and RBAC allows, else DNS",
    )
    parser.add_argument("--zone", help="client zone: prefer endpoints hinted for it (API source)")
    parser.add_argument("--namespace", help="namespace of short names (default: POD_NAMESPACE)")
    parser.add_argument("--cluster-domain", help="cluster domain (default: from resolv.conf)")
    parser.add_argument("--timeout", type=_positive(float), default=2.0, help="per query (s)")
    parser.add_argument("--attempts", type=_positive(int), default=3, help="queries per lookup")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _epilog(examples: str) -> str:
    return examples + "\n" + _COMMON_EPILOG


def _add_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    *,
    summary: str,
    description: str,
    examples: str,
) -> argparse.ArgumentParser:
    """A subcommand whose help ends, as every command's does, with examples and exit codes."""
    return commands.add_parser(
        name,
        help=summary,
        description=description,
        epilog=_epilog(examples),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Client-side service discovery over Kubernetes headless Services.",
        epilog=_epilog(_RESOLVE_EXAMPLES),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    resolve = _add_command(
        commands,
        "resolve",
        summary="print the endpoints of a service once",
        description="Print a service's endpoints, like `dig +short SRV` but by service name.",
        examples=_RESOLVE_EXAMPLES,
    )
    _add_resolver_options(resolve)
    watch = _add_command(
        commands,
        "watch",
        summary="print the endpoints, then every change, until Ctrl-C",
        description="Print the endpoint set, then each pod added or removed, until Ctrl-C.",
        examples=_WATCH_EXAMPLES,
    )
    _add_resolver_options(watch)
    top = _add_command(
        commands,
        "top",
        summary="show what the resolver knows about a service, refreshed in place",
        description="Each pod (port, hostname, when it joined), TTL left, stale flag, recent"
        " changes, DNS queries and failures; refreshed every interval until Ctrl-C.",
        examples=_TOP_EXAMPLES,
    )
    _add_resolver_options(top)
    top.add_argument("--interval", type=_positive(float), default=1.0, help="seconds (1.0)")
    top.add_argument(
        "-n", "--iterations", type=_positive(int), help="stop after this many refreshes"
    )
    demo = _add_command(
        commands,
        "demo",
        summary="run a local cluster and compare the strategies",
        description="Balance traffic over a local cluster with each strategy and plain httpx.",
        examples=_DEMO_EXAMPLES,
    )
    demo.add_argument("--pods", type=_positive(int), default=4, help="initial pods (3..40)")
    demo.add_argument("--seconds", type=_positive(float), default=30.0, help="run time")
    return parser


def _resolver(args: argparse.Namespace) -> HeadlessResolver:
    nameservers = args.nameserver
    if nameservers is None and os.environ.get(NAMESERVER_ENV):
        nameservers = [_nameserver(n.strip()) for n in os.environ[NAMESERVER_ENV].split(",")]
    return HeadlessResolver(
        nameservers,
        backend=args.backend,
        namespace=args.namespace,
        cluster_domain=args.cluster_domain,
        timeout=args.timeout,
        attempts=args.attempts,
        source=args.source,
        zone=args.zone,
    )


def _sorted(endpoints: EndpointSet | frozenset[Endpoint]) -> list[Endpoint]:
    def key(e: Endpoint) -> tuple[int, int, int]:
        address = ipaddress.ip_address(e.ip)
        return address.version, int(address), e.port or 0

    return sorted(endpoints, key=key)


def _endpoints_json(endpoints: EndpointSet | frozenset[Endpoint]) -> list[dict[str, Any]]:
    return [
        {
            "ip": e.ip,
            "port": e.port,
            "hostname": e.hostname,
            "priority": e.priority,
            "weight": e.weight,
            "zone": e.zone,
            "node": e.node_name,
            "terminating": e.terminating,
        }
        for e in _sorted(endpoints)
    ]


def _ttl_left(endpoints: EndpointSet) -> float:
    return max(0.0, endpoints.expires_at - time.monotonic())


def render_table(endpoints: EndpointSet) -> str:
    """The endpoints as aligned columns: address, port, pod hostname, TTL left, stale."""
    ttl = f"{_ttl_left(endpoints):.1f}s"
    stale = "yes" if endpoints.stale else "no"
    rows = [("ADDRESS", "PORT", "POD", "TTL", "STALE")]
    for e in _sorted(endpoints):
        port = "-" if e.port is None else str(e.port)
        rows.append((e.ip, port, e.hostname or "-", ttl, stale))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


async def _resolve(args: argparse.Namespace, out: TextIO) -> int:
    async with _resolver(args) as resolver:
        endpoints = await resolver.resolve(args.name, port=args.port, proto=args.proto)
        source = resolver.source_kind
    if args.json:
        document = {
            "name": endpoints.name,
            "source": source,
            "version": endpoints.version,
            "stale": endpoints.stale,
            "ttl": round(_ttl_left(endpoints), 3),
            "endpoints": _endpoints_json(endpoints),
        }
        print(json.dumps(document), file=out)
    else:
        print(render_table(endpoints), file=out)
    return EXIT_OK


def _describe(e: Endpoint) -> str:
    pod = f"  {e.hostname}" if e.hostname else ""
    return f"{e.netloc()}{pod}"


async def _watch(args: argparse.Namespace, out: TextIO) -> int:
    previous: EndpointSet | None = None
    async with _resolver(args) as resolver:
        async for current in resolver.watch(args.name, port=args.port, proto=args.proto):
            now = datetime.now().astimezone()
            if previous is None:
                added, removed = current.members, frozenset[Endpoint]()
            else:
                added, removed = previous.diff(current)
                if not (added or removed or previous.stale != current.stale):
                    continue
            previous = current
            if args.json:
                event = {
                    "time": now.isoformat(timespec="milliseconds"),
                    "name": current.name,
                    "version": current.version,
                    "stale": current.stale,
                    "added": _endpoints_json(added),
                    "removed": _endpoints_json(removed),
                    "endpoints": _endpoints_json(current),
                }
                print(json.dumps(event), file=out, flush=True)
                continue
            stamp = now.strftime("%H:%M:%S.%f")[:-3]
            flag = (
                f"  (stale: {resolver.source_kind} failing, serving last known set)"
                if current.stale
                else ""
            )
            print(
                f"{stamp}  {current.name}  {len(current)} endpoints  v{current.version}{flag}",
                file=out,
            )
            for e in _sorted(removed):
                print(f"{stamp}  - {_describe(e)}", file=out)
            for e in _sorted(added):
                print(f"{stamp}  + {_describe(e)}", file=out)
            out.flush()
    return EXIT_OK


async def _top(args: argparse.Namespace, out: TextIO) -> int:
    from headless_resolver._top import run_top

    async with _resolver(args) as resolver:
        await run_top(
            resolver,
            args.name,
            port=args.port,
            proto=args.proto,
            out=out,
            interval=args.interval,
            iterations=args.iterations,
            as_json=args.json,
        )
    return EXIT_OK


async def _demo(args: argparse.Namespace, out: TextIO) -> int:
    from headless_resolver._demo import run_demo

    await run_demo(pods=args.pods, seconds=args.seconds, out=out, progress=sys.stderr)
    return EXIT_OK


_COMMANDS: dict[str, Callable[[argparse.Namespace, TextIO], Coroutine[Any, Any, int]]] = {
    "resolve": _resolve,
    "watch": _watch,
    "top": _top,
    "demo": _demo,
}


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit code (see ``EXIT_CODES``)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "demo" and not 3 <= args.pods <= 40:
        parser.error("demo: --pods must be between 3 and 40")
    try:
        return asyncio.run(_COMMANDS[args.command](args, sys.stdout))
    except KeyboardInterrupt:
        if args.command in ("watch", "top"):
            return EXIT_OK  # the usual way to end them
        print(f"\n{PROG}: {args.command} interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except argparse.ArgumentTypeError as error:
        print(f"{PROG}: error: {NAMESERVER_ENV}: {error}", file=sys.stderr)
        return EXIT_USAGE
    except HeadlessResolverError as error:
        code, label = next((c, t) for kind, c, t in _ERROR_EXITS if isinstance(error, kind))
        print(f"{PROG}: {label}: {_one_line(error)}", file=sys.stderr)
        return code
