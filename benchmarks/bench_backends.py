"""CPU time per query of each DNS backend for a large headless service (default 2,000 pods).

Run: ``python benchmarks/bench_backends.py [pods] [iterations]`` (needs ``knotd``). Each query
is a full exchange against a real Knot DNS on loopback: UDP (truncated), then TCP, then parsing.
``time.process_time`` counts every thread of the process, so c-ares' event thread is included.
For reference it also times dnspython's own ``Message.from_wire`` on the same TCP answer.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import dns.message
import dns.query

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from headless_resolver._dns import BACKENDS, make_backend
from headless_resolver.testing._model import ServiceSpec
from tests.servers import KnotServer

NAME = "big.default.svc.cluster.local."


async def cpu_ms_per_query(kind: str, host: str, port: int, pods: int, iterations: int) -> float:
    backend = make_backend(kind, [(host, port)], timeout=5.0)  # type: ignore[arg-type]
    try:
        answer = await backend.query(NAME, "A")  # warm-up, and a completeness check
        if len(answer.addresses) != pods:
            raise SystemExit(f"{kind}: got {len(answer.addresses)} of {pods} addresses")
        started = time.process_time()
        for _ in range(iterations):
            await backend.query(NAME, "A")
        return (time.process_time() - started) / iterations * 1000
    finally:
        await backend.aclose()


def from_wire_ms(host: str, port: int, iterations: int) -> float:
    request = dns.message.make_query(NAME, "A", use_edns=0, payload=1232)
    wire = dns.query.tcp(request, host, port=port, timeout=5.0).to_wire(max_size=65535)
    started = time.process_time()
    for _ in range(iterations):
        dns.message.from_wire(wire)
    return (time.process_time() - started) / iterations * 1000


def main() -> None:
    pods = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    iterations = int(sys.argv[2]) if len(sys.argv) > 2 else 50
    service = ServiceSpec(
        "big", endpoints=tuple(f"10.9.{i // 250}.{i % 250 + 1}" for i in range(pods))
    )
    with KnotServer([service]) as knot:
        print(f"{pods}-pod A answer over UDP (TC) + TCP from Knot, {iterations} iterations")
        for kind in BACKENDS:
            ms = asyncio.run(cpu_ms_per_query(kind, knot.host, knot.port, pods, iterations))
            print(f"  {kind:<10} {ms:6.2f} ms CPU per query (exchange + parse)")
        reference = from_wire_ms(knot.host, knot.port, max(5, iterations // 10))
        print(f"  reference: dns.message.from_wire alone {reference:6.2f} ms CPU")


if __name__ == "__main__":
    main()
