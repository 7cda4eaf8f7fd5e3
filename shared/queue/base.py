"""The queue protocol: what the jobs API needs from Service Bus."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class OutgoingMessage:
    body: bytes
    message_id: str
    correlation_id: str | None = None
    application_properties: dict[str, Any] = field(default_factory=dict)
    content_type: str = "application/json"
    reply_to: str | None = None


class JobQueue(Protocol):
    kind: str

    async def send(self, queue: str, message: OutgoingMessage) -> None: ...

    async def close(self) -> None: ...
