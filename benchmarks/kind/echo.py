"""Echo pod for the in-cluster benchmark: answers every request with who it is.

Same answer as ``headless_resolver.testing``'s loopback pods: JSON ``{"pod", "ip", "host",
"sni"}`` and an ``x-pod`` header naming the pod, over HTTP/1.1 keep-alive. The pod whose
hostname equals ``SLOW_POD`` waits ``SLOW_MS`` milliseconds before each answer, so one
StatefulSet can hold one slow pod. Listens on ``HOST:PORT`` (default ``0.0.0.0:8080``).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket


async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    pod = os.environ.get("HOSTNAME") or socket.gethostname()
    delay = float(os.environ.get("SLOW_MS", "0")) / 1000 if pod == os.environ.get("SLOW_POD") else 0
    ip = writer.get_extra_info("sockname")[0]
    try:
        while True:
            request = await reader.readuntil(b"\r\n\r\n")
            lines = request.decode("latin-1").split("\r\n")
            headers = dict(
                (name.strip().lower(), value.strip())
                for name, _, value in (line.partition(":") for line in lines[1:] if line)
            )
            length = int(headers.get("content-length", "0"))
            if length:
                await reader.readexactly(length)
            if delay:
                await asyncio.sleep(delay)
            body = json.dumps({"pod": pod, "ip": ip, "host": headers.get("host"), "sni": None})
            close = headers.get("connection", "").lower() == "close"
            head = [
                "HTTP/1.1 200 OK",
                f"x-pod: {pod}",
                "content-type: application/json",
                f"content-length: {len(body)}",
            ]
            if close:
                head.append("connection: close")
            writer.write(("\r\n".join(head) + "\r\n\r\n" + body).encode())
            await writer.drain()
            if close:
                break
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        pass
    finally:
        writer.close()


async def main() -> None:
    host = os.environ.get("HOST", "0.0.0.0")
    port = int(os.environ.get("PORT", "8080"))
    server = await asyncio.start_server(answer, host, port, backlog=1024)
    bound = server.sockets[0].getsockname()
    print(f"echo: listening on {bound[0]}:{bound[1]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
