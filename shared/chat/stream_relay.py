"""A streamed answer relayed chunk by chunk, with the tally accounting and caching need at its end."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from ..errors import UpstreamError
from ..metrics import UPSTREAM_ERRORS
from ..providers.base import Chunk, Completion
from .completion_chunks import completion_from_stream, next_or_none


@dataclass
class StreamTally:
    model: str
    text: list[str] = field(default_factory=list)
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    tool_calls: bool = False
    completed: bool = False
    abandoned: bool = False  # the caller went away before the end
    error: UpstreamError | None = None

    def as_completion(self) -> Completion:
        return completion_from_stream(self.meta, self.model, "".join(self.text), self.finish_reason, self.usage)

    def take(self, chunk: Chunk) -> None:
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for ch in chunk.get("choices") or []:
            delta = ch.get("delta") or {}
            if delta.get("content"):
                self.text.append(delta["content"])
            if delta.get("tool_calls"):
                self.tool_calls = True
            if ch.get("finish_reason"):
                self.finish_reason = ch["finish_reason"]


async def relay(
    first: Chunk, rest: AsyncIterator[Chunk], tally: StreamTally, wants_usage: bool
) -> AsyncIterator[Chunk]:
    """The upstream's chunks under the router's model id. A failure after the first byte cannot
    fall back (bytes are with the caller): it ends the stream with an {"error": ...} object."""
    tally.meta = {"id": first.get("id"), "created": first.get("created")}
    chunk: Chunk | None = first
    try:
        while chunk is not None:
            chunk["model"] = tally.model
            tally.take(chunk)
            if chunk.get("choices") or wants_usage:
                if not wants_usage and "usage" in chunk:
                    chunk = {k: v for k, v in chunk.items() if k != "usage"}
                yield chunk
            chunk = await next_or_none(rest)
        tally.completed = True
    except UpstreamError as exc:
        tally.error = exc
        UPSTREAM_ERRORS.labels(tally.model, exc.reason).inc()
        yield exc.body()
