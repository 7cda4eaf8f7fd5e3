"""What the chat pipeline hands back: the answer (whole or as chunks) and how it was made."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from ..providers.base import Chunk, Completion
from ..routing.decision import Decision


@dataclass
class AnswerMeta:
    """How an answer was made; the HTTP layer turns it into x-router-* headers."""

    model: str
    policy: str
    cache: str  # hit | miss | bypass | semantic_hit
    overhead_ms: float = 0.0
    upstream_ms: float = 0.0
    fallbacks: list[dict[str, str]] = field(default_factory=list)
    cache_kind: str | None = None  # response | semantic, on a hit


@dataclass
class ChatResult:
    request_id: str
    decision: Decision | None  # None when a cached answer was replayed
    meta: AnswerMeta
    completion: Completion | None = None
    # a stream: OpenAI chunks, then an {"error": ...} object if the upstream failed mid-way
    chunks: AsyncIterator[Chunk] | None = None
