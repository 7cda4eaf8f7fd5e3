"""A queue message as the job service sees it: no host or SDK type. The trigger adapter
(shared/triggers.py) builds it from the Functions binding; the local bus from its delivery."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class JobMessage:
    body: bytes
    message_id: str
    delivery_count: int = 1
    reply_to: str | None = None
    properties: dict[str, str] = field(default_factory=dict)


def str_props(props: Mapping[Any, Any] | None) -> dict[str, str]:
    """Application properties with str keys and values (AMQP hands over bytes)."""
    out: dict[str, str] = {}
    for k, v in (props or {}).items():
        key = k.decode() if isinstance(k, bytes) else str(k)
        out[key] = v.decode() if isinstance(v, bytes) else str(v)
    return out
