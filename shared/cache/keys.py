"""Cache keys. Everything that can change an answer is in the key; see tests/test_cache_keys.py."""

from __future__ import annotations

import hashlib

import orjson

from ..schemas import ChatCompletionRequest

KEY_VERSION = "v1"


def response_cache_key(req: ChatCompletionRequest, tenant: str | None) -> str:
    material = {
        "tenant": tenant or "",
        "model": req.model,
        "routing": req.routing.model_dump(mode="json", exclude_none=True, exclude={"cache", "semantic_cache"})
        if req.routing
        else {},
        "messages": [m.model_dump(mode="json", exclude_none=True) for m in req.messages],
        "params": req.generation_params(),
    }
    digest = hashlib.sha256(orjson.dumps(material, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return f"llmr:resp:{KEY_VERSION}:{digest}"


def is_deterministic(req: ChatCompletionRequest) -> bool:
    return req.temperature == 0 or req.seed is not None
