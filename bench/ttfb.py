"""Streaming time to first byte: N sequential `stream: true` requests over one keep-alive
connection, timed from the request's write to the first SSE event's bytes.

A raw asyncio stream client, so that the client's own cost is tiny and the same for every target.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import orjson

_END_OF_CHUNKED = b"0\r\n\r\n"


async def _one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes, timeout_s: float) -> float:
    t0 = time.perf_counter()
    writer.write(request)
    buf = b""
    first: float | None = None
    async with asyncio.timeout(timeout_s):
        while True:
            data = await reader.read(65536)
            if not data:
                raise ConnectionError("the server closed the stream")
            buf += data
            if first is None:
                head_end = buf.find(b"\r\n\r\n")
                if head_end >= 0:
                    if not buf.startswith(b"HTTP/1.1 200"):
                        raise RuntimeError(f"stream answered {buf[:200]!r}")
                    if b"data:" in buf[head_end:]:
                        first = time.perf_counter()
            if first is not None and buf.endswith(_END_OF_CHUNKED):
                return (first - t0) * 1000


async def measure(
    host: str, port: int, path: str, body: dict[str, Any], *, n: int, headers: dict[str, str] | None = None
) -> dict[str, float]:
    payload = orjson.dumps(body)
    lines = [
        f"POST {path} HTTP/1.1",
        f"host: {host}:{port}",
        "content-type: application/json",
        "accept: text/event-stream",
        f"content-length: {len(payload)}",
    ]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode() + payload
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for _ in range(min(20, n)):  # warm-up
            await _one(reader, writer, request, 10.0)
        times = [await _one(reader, writer, request, 10.0) for _ in range(n)]
    finally:
        writer.close()
        await writer.wait_closed()
    times.sort()
    return {
        "n": n,
        "p50_ms": round(statistics.median(times), 3),
        "p90_ms": round(times[int(0.9 * (n - 1))], 3),
        "min_ms": round(times[0], 3),
    }


def measure_sync(
    host: str, port: int, path: str, body: dict[str, Any], *, n: int, headers: dict[str, str] | None = None
) -> dict[str, float]:
    return asyncio.run(measure(host, port, path, body, n=n, headers=headers))
