"""Conversions between a completion and its chunks (a cached completion replays as a stream; a
finished stream is cached as a completion). SSE framing is the HTTP layer's (shared/api/sse.py)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from ..providers.base import Chunk, Completion


async def next_or_none(it: AsyncIterator[Chunk]) -> Chunk | None:
    try:
        return await it.__anext__()
    except StopAsyncIteration:
        return None


def completion_from_stream(
    meta: dict[str, Any], model: str, text: str, finish: str | None, usage: dict[str, Any] | None
) -> Completion:
    return {
        "id": meta.get("id") or "chatcmpl-cached",
        "object": "chat.completion",
        "created": meta.get("created") or int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish or "stop",
            }
        ],
        "usage": usage or {},
    }


def chunks_from_completion(c: Completion, with_usage: bool) -> list[Chunk]:
    base = {"id": c.get("id"), "object": "chat.completion.chunk", "created": c.get("created"), "model": c.get("model")}
    choice = (c.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    chunks: list[Chunk] = [
        {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]},
    ]
    if message.get("content"):
        chunks.append(
            {**base, "choices": [{"index": 0, "delta": {"content": message["content"]}, "finish_reason": None}]}
        )
    if message.get("tool_calls"):
        calls = [{**tc, "index": i} for i, tc in enumerate(message["tool_calls"])]
        chunks.append({**base, "choices": [{"index": 0, "delta": {"tool_calls": calls}, "finish_reason": None}]})
    chunks.append(
        {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": choice.get("finish_reason", "stop")}]}
    )
    if with_usage:
        chunks.append({**base, "choices": [], "usage": c.get("usage") or {}})
    return chunks


async def replay_chunks(c: Completion, with_usage: bool) -> AsyncIterator[Chunk]:
    for chunk in chunks_from_completion(c, with_usage):
        yield chunk
