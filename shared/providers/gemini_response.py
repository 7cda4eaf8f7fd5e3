"""Gemini's answers to OpenAI dicts: a response becomes a `chat.completion`, a stream of
responses `chat.completion.chunk`s (StreamTranslator). Pure, no I/O; a blocked prompt or answer
raises ContentFiltered. The way there is gemini_request.py.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

from google.genai import types

from ..catalog import ModelSpec
from ..errors import ContentFiltered, UpstreamUnavailable
from .base import Chunk, Completion

_FILTER_REASONS = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
        "MODEL_ARMOR",
    }
)


# --- Gemini → OpenAI -------------------------------------------------------------------------


def _enum_name(value: Any) -> str:
    return str(getattr(value, "value", value))


def _finish_reason(reason: str | None) -> str:
    if reason is None or reason == "STOP":
        return "stop"
    if reason == "MAX_TOKENS":
        return "length"
    if reason in _FILTER_REASONS:
        return "content_filter"
    return "stop"


def _parts(cand: types.Candidate) -> tuple[str, list[dict[str, Any]]]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for part in cand.content.parts if cand.content and cand.content.parts else []:
        if part.function_call is not None:
            fc = part.function_call
            call: dict[str, Any] = {
                "id": fc.id or f"call_{uuid.uuid4().hex[:24]}",
                "type": "function",
                "function": {"name": fc.name or "", "arguments": json.dumps(fc.args or {}, ensure_ascii=False)},
            }
            if part.thought_signature:
                # the shape Google's own OpenAI-compatible endpoint uses; callers echo it back
                sig = base64.b64encode(part.thought_signature).decode("ascii")
                call["extra_content"] = {"google": {"thought_signature": sig}}
            calls.append(call)
        elif part.text and not part.thought:
            texts.append(part.text)
    return "".join(texts), calls


def _raise_if_prompt_blocked(resp: types.GenerateContentResponse, model: ModelSpec) -> None:
    fb = resp.prompt_feedback
    if fb is not None and fb.block_reason is not None:
        reason = _enum_name(fb.block_reason)
        detail = f": {fb.block_reason_message}" if fb.block_reason_message else ""
        raise ContentFiltered(f"{model.id} blocked the prompt ({reason}){detail}.", model=model.id)


def _usage(meta: types.GenerateContentResponseUsageMetadata | None) -> dict[str, Any]:
    if meta is None:
        return {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    prompt = (meta.prompt_token_count or 0) + (meta.tool_use_prompt_token_count or 0)
    thoughts = meta.thoughts_token_count or 0
    completion = (meta.candidates_token_count or 0) + thoughts
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": meta.total_token_count or prompt + completion,
    }
    if thoughts:
        usage["completion_tokens_details"] = {"reasoning_tokens": thoughts}
    if meta.cached_content_token_count:
        usage["prompt_tokens_details"] = {"cached_tokens": meta.cached_content_token_count}
    return usage


def completion_from_response(resp: types.GenerateContentResponse, model: ModelSpec) -> Completion:
    _raise_if_prompt_blocked(resp, model)
    cand = resp.candidates[0] if resp.candidates else None
    if cand is None:
        raise UpstreamUnavailable(f"{model.id} returned no candidates.", model=model.id)
    text, calls = _parts(cand)
    reason = _enum_name(cand.finish_reason) if cand.finish_reason is not None else None
    if not text and not calls and reason in _FILTER_REASONS:
        raise ContentFiltered(f"{model.id} blocked the response ({reason}).", model=model.id)
    message: dict[str, Any] = {"role": "assistant", "content": text if (text or not calls) else None}
    if calls:
        message["tool_calls"] = calls
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model.id,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": "tool_calls" if calls else _finish_reason(reason),
                "logprobs": None,
            }
        ],
        "usage": _usage(resp.usage_metadata),
    }


class StreamTranslator:
    """One streamed call: Gemini responses in, `chat.completion.chunk` dicts out.

    feed() each response as it arrives; finish() once the stream has ended, for the closing
    chunks (finish reason, then usage) or the error that an incomplete or blocked stream is.
    """

    def __init__(self, model: ModelSpec) -> None:
        self._model = model
        self._id = f"chatcmpl-{uuid.uuid4().hex}"
        self._created = int(time.time())
        self._sent_role = False
        self._produced = False
        self._tool_index = 0
        self._finish: str | None = None
        self._usage: types.GenerateContentResponseUsageMetadata | None = None

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> Chunk:
        return {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model.id,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
        }

    def feed(self, resp: types.GenerateContentResponse) -> Chunk | None:
        """The chunk this response carries, if any."""
        _raise_if_prompt_blocked(resp, self._model)
        if resp.usage_metadata is not None:
            self._usage = resp.usage_metadata
        cand = resp.candidates[0] if resp.candidates else None
        if cand is None:
            return None
        text, calls = _parts(cand)
        delta: dict[str, Any] = {}
        if text:
            delta["content"] = text
        if calls:
            delta["tool_calls"] = [{"index": self._tool_index + i, **c} for i, c in enumerate(calls)]
            self._tool_index += len(calls)
        if cand.finish_reason is not None:
            self._finish = _enum_name(cand.finish_reason)
        if not delta:
            return None
        self._produced = True
        if not self._sent_role:
            delta = {"role": "assistant", **delta}
            self._sent_role = True
        return self._chunk(delta)

    def finish(self) -> list[Chunk]:
        """The closing chunks, the last one carrying the usage and no choices."""
        model = self._model
        if self._finish is None:
            raise UpstreamUnavailable(f"{model.id} stream ended without a finish reason.", model=model.id)
        if not self._produced and self._finish in _FILTER_REASONS:
            raise ContentFiltered(f"{model.id} blocked the response ({self._finish}).", model=model.id)
        chunks: list[Chunk] = []
        if not self._sent_role:
            chunks.append(self._chunk({"role": "assistant", "content": ""}))
        chunks.append(self._chunk({}, "tool_calls" if self._tool_index else _finish_reason(self._finish)))
        final = self._chunk({})
        final["choices"] = []
        final["usage"] = _usage(self._usage)
        chunks.append(final)
        return chunks
