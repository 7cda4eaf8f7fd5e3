"""Server-Sent Events in the OpenAI stream shape: `data: <json>` per chunk, then `data: [DONE]`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

SSE_DONE = b"data: [DONE]\n\n"


def sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


async def sse_stream(chunks: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        yield sse(chunk)
    yield SSE_DONE


class SseResponse(StreamingResponse):
    """A text/event-stream response that stops when the caller goes away, watched by one asyncio
    task instead of starlette's anyio task group (~60 µs per stream hot, paid before the first
    byte; docs/performance.md). On servers that announce ASGI 2.4, send() raises once the caller
    is gone and starlette needs no watcher at all: that path is starlette's own."""

    def __init__(self, chunks: AsyncIterator[dict[str, Any]], headers: dict[str, str]) -> None:
        super().__init__(sse_stream(chunks), media_type="text/event-stream", headers=headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        spec = tuple(int(p) for p in scope.get("asgi", {}).get("spec_version", "2.0").split("."))
        streaming = asyncio.current_task()
        if spec >= (2, 4) or streaming is None or scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        gone = False

        async def watch() -> None:
            nonlocal gone
            while (await receive())["type"] != "http.disconnect":
                pass
            gone = True
            streaming.cancel()  # interrupts the stream where it waits (for the upstream's next chunk)

        watcher = asyncio.create_task(watch())
        try:
            await self.stream_response(send)
        except asyncio.CancelledError:
            if not gone or streaming.uncancel() > 0:  # cancelled by someone else too: let it through
                raise
        finally:
            watcher.cancel()
        if gone and streaming.cancelling():
            # the caller left just as the stream ended: absorb the cancellation the watcher asked for
            try:
                await asyncio.sleep(0)
            except asyncio.CancelledError:
                streaming.uncancel()
        if self.background is not None:
            await self.background()
