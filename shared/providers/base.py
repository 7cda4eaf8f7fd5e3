"""The provider protocol.

A provider takes a validated OpenAI-style request and a catalog entry, calls its backend
once (no retries: the service owns the one retry loop), and returns OpenAI-shaped dicts:
a `chat.completion`, or `chat.completion.chunk`s whose last one carries `usage`.
Every failure is raised as a typed UpstreamError (errors.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from ..catalog import ModelSpec
from ..schemas import ChatCompletionRequest

Completion = dict[str, Any]
Chunk = dict[str, Any]


@dataclass(frozen=True)
class Timeouts:
    connect_s: float
    read_s: float
    stream_idle_s: float


class Provider(Protocol):
    async def complete(self, req: ChatCompletionRequest, model: ModelSpec, timeouts: Timeouts) -> Completion: ...

    def stream(self, req: ChatCompletionRequest, model: ModelSpec, timeouts: Timeouts) -> AsyncIterator[Chunk]: ...

    async def aclose(self) -> None: ...


def openai_payload(req: ChatCompletionRequest, upstream_model: str) -> dict[str, Any]:
    """The request as an OpenAI-compatible upstream expects it (router extensions removed)."""
    body = req.model_dump(mode="json", exclude_none=True, exclude={"routing", "n", "user"})
    body["model"] = upstream_model
    if req.user is not None:
        body["user"] = req.user
    return body
