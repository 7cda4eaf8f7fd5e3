"""What the service writes after every request, and the sink protocol that takes it.

`record()` never blocks and never raises: the request log is written off the hot path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol


class StoreUnavailable(Exception):
    """The database cannot answer now. Raised by store/ instead of driver errors; the HTTP layer
    maps it to 503 (shared/api/http.py)."""


class StoreRejected(Exception):
    """The database refused a value of this row (PostgreSQL's data or integrity classes): retrying
    the same row can never succeed. The HTTP layer maps it to 400. Its message never quotes the
    value."""


@dataclass
class RequestLogRow:
    id: str
    tenant: str | None
    requested_model: str
    policy: str | None
    chosen_model: str | None
    decision: dict[str, Any] | None
    cache: str  # hit | miss | bypass | semantic_hit
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_ms: float = 0.0
    upstream_ms: float = 0.0
    overhead_ms: float = 0.0
    status: int = 200
    error_code: str | None = None
    stream: bool = False
    usage_source: str = "provider"  # provider | estimated | none
    fallbacks: list[dict[str, str]] = field(default_factory=list)
    source: str = "http"  # http | job | shadow (a call made after an answer to label traffic)
    prompt_text: str | None = None
    purpose: str = "answer"  # answer | shadow | judge
    parent_request_id: str | None = None  # the answered request a shadow or judge call belongs to
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))


class RequestLogSink(Protocol):
    def record(self, row: RequestLogRow) -> None: ...

    async def close(self) -> None: ...


class MemoryRequestLog:
    """Keeps rows in memory (DATABASE_ENABLED=false, and unit tests)."""

    def __init__(self, max_rows: int = 100_000) -> None:
        self.rows: list[RequestLogRow] = []
        self.max_rows = max_rows

    def record(self, row: RequestLogRow) -> None:
        self.rows.append(row)
        if len(self.rows) > self.max_rows:
            del self.rows[: len(self.rows) - self.max_rows]

    async def close(self) -> None:
        return None
