"""OpenAI chat requests to Gemini's google-genai types, and Gemini's answers back to OpenAI dicts.

Pure translation, no I/O: messages, content parts, tools, tool_choice, generation parameters and
response_format become `contents` + `GenerateContentConfig`; a response becomes a
`chat.completion`, a stream of responses `chat.completion.chunk`s (StreamTranslator). A request
Gemini cannot express raises UpstreamBadRequest; a blocked prompt or answer, ContentFiltered.
"""

from __future__ import annotations

import base64
import binascii
import json
import mimetypes
import re
import time
import uuid
from typing import Any
from urllib.parse import unquote_to_bytes, urlparse

from google.genai import types

from ..catalog import ModelSpec
from ..errors import ContentFiltered, UpstreamBadRequest, UpstreamUnavailable
from ..schemas import (
    ChatCompletionRequest,
    FilePart,
    ImagePart,
    InputAudioPart,
    Message,
    RefusalPart,
    TextPart,
    ToolCall,
)
from .base import Chunk, Completion

# Gemini 3 rejects a replayed function call without its thought signature. When the caller's
# history does not carry one (see _function_call_part), this documented placeholder skips the check.
_SKIP_SIGNATURE = b"skip_thought_signature_validator"

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


# --- OpenAI → Gemini -------------------------------------------------------------------------


def build_request(
    req: ChatCompletionRequest, http_options: types.HttpOptions
) -> tuple[list[types.Content], types.GenerateContentConfig]:
    system, contents = convert_messages(req.messages)
    cfg: dict[str, Any] = {
        "system_instruction": system,
        "temperature": req.temperature,
        "top_p": req.top_p,
        "max_output_tokens": req.output_limit,
        "stop_sequences": [req.stop] if isinstance(req.stop, str) else req.stop,
        "seed": req.seed,
        "presence_penalty": req.presence_penalty,
        "frequency_penalty": req.frequency_penalty,
        "automatic_function_calling": types.AutomaticFunctionCallingConfig(disable=True),
        "http_options": http_options,
    }
    rf = req.response_format
    if rf is not None and rf.type == "json_object":
        cfg["response_mime_type"] = "application/json"
    elif rf is not None and rf.type == "json_schema":
        cfg["response_mime_type"] = "application/json"
        schema = (rf.json_schema or {}).get("schema")
        if isinstance(schema, dict):
            cfg["response_json_schema"] = schema
    if req.tools:
        decls = [
            types.FunctionDeclaration(
                name=t.function.name,
                description=t.function.description,
                parameters_json_schema=t.function.parameters,
            )
            for t in req.tools
        ]
        cfg["tools"] = [types.Tool(function_declarations=decls)]
        cfg["tool_config"] = _tool_config(req.tool_choice)
    elif req.tool_choice is not None and req.tool_choice != "none":
        raise UpstreamBadRequest("tool_choice was given without tools.", param="tool_choice")
    config = types.GenerateContentConfig(**{k: v for k, v in cfg.items() if v is not None})
    return contents, config


def _tool_config(choice: str | dict[str, Any] | None) -> types.ToolConfig | None:
    mode: types.FunctionCallingConfigMode
    allowed: list[str] | None = None
    if choice is None:
        return None
    if choice == "none":
        mode = types.FunctionCallingConfigMode.NONE
    elif choice == "auto":
        mode = types.FunctionCallingConfigMode.AUTO
    elif choice == "required":
        mode = types.FunctionCallingConfigMode.ANY
    elif isinstance(choice, dict):
        fn = choice.get("function") if choice.get("type", "function") == "function" else None
        name = fn.get("name") if isinstance(fn, dict) else None
        if not isinstance(name, str) or not name:
            raise UpstreamBadRequest(
                "tool_choice must be none, auto, required or {'type': 'function', 'function': {'name': ...}}.",
                param="tool_choice",
            )
        mode, allowed = types.FunctionCallingConfigMode.ANY, [name]
    else:
        raise UpstreamBadRequest(f"Unsupported tool_choice {choice!r}.", param="tool_choice")
    return types.ToolConfig(
        function_calling_config=types.FunctionCallingConfig(mode=mode, allowed_function_names=allowed)
    )


def convert_messages(messages: list[Message]) -> tuple[types.Content | None, list[types.Content]]:
    """System/developer turns become the system instruction; the rest alternate user/model."""
    system: list[str] = []
    contents: list[types.Content] = []
    call_names: dict[str, str] = {}

    def add(role: str, parts: list[types.Part]) -> None:
        if not parts:
            return
        if contents and contents[-1].role == role and contents[-1].parts is not None:
            contents[-1].parts.extend(parts)  # parallel tool results belong in one turn
        else:
            contents.append(types.Content(role=role, parts=parts))

    for m in messages:
        if m.role in ("system", "developer"):
            text = m.text()
            if text:
                system.append(text)
        elif m.role == "user":
            add("user", _content_parts(m))
        elif m.role == "assistant":
            parts = _content_parts(m)
            for i, tc in enumerate(m.tool_calls or []):
                call_names[tc.id] = tc.function.name
                parts.append(_function_call_part(tc, first=i == 0))
            add("model", parts)
        else:  # tool, or the legacy function role
            name = (call_names.get(m.tool_call_id) if m.tool_call_id else None) or m.name or m.tool_call_id or "tool"
            add(
                "user",
                [types.Part(function_response=types.FunctionResponse(name=name, response=_tool_result(m.text())))],
            )
    instruction = types.Content(parts=[types.Part(text="\n\n".join(system))]) if system else None
    return instruction, contents


def _content_parts(m: Message) -> list[types.Part]:
    if m.content is None:
        return []
    if isinstance(m.content, str):
        return [types.Part(text=m.content)] if m.content else []
    parts: list[types.Part] = []
    for p in m.content:
        if isinstance(p, TextPart):
            if p.text:
                parts.append(types.Part(text=p.text))
        elif isinstance(p, ImagePart):
            parts.append(_media_part(p.image_url.url, default_mime="image/jpeg"))
        elif isinstance(p, RefusalPart):
            parts.append(types.Part(text=p.refusal))
        elif isinstance(p, InputAudioPart):
            audio = p.input_audio
            fmt = str(audio.get("format") or "wav")
            try:
                data = base64.b64decode(str(audio.get("data") or ""), validate=True)
            except (binascii.Error, ValueError):
                raise UpstreamBadRequest("input_audio.data is not valid base64.", param="messages") from None
            parts.append(types.Part(inline_data=types.Blob(data=data, mime_type=f"audio/{fmt}")))
        elif isinstance(p, FilePart):
            file = p.file
            data_url = file.get("file_data")
            if not isinstance(data_url, str):
                raise UpstreamBadRequest(
                    "Vertex AI cannot read OpenAI file ids; send the file inline as file.file_data.",
                    param="messages",
                )
            mime = mimetypes.guess_type(str(file.get("filename") or ""))[0] or "application/pdf"
            if not data_url.startswith("data:"):
                data_url = f"data:{mime};base64,{data_url}"
            parts.append(_media_part(data_url, default_mime=mime))
    return parts


_DATA_URL = re.compile(r"^data:(?P<mime>[^;,]*)(?P<params>(;[^;,]*)*),(?P<data>.*)$", re.DOTALL)


def _media_part(url: str, *, default_mime: str) -> types.Part:
    if url.startswith("data:"):
        match = _DATA_URL.match(url)
        if match is None:
            raise UpstreamBadRequest("A data: URL in the request is malformed.", param="messages")
        mime = match.group("mime") or default_mime
        payload = match.group("data")
        try:
            if ";base64" in match.group("params"):
                data = base64.b64decode(payload, validate=False)
            else:
                data = unquote_to_bytes(payload)
        except (binascii.Error, ValueError):
            raise UpstreamBadRequest("A data: URL in the request is not valid base64.", param="messages") from None
        return types.Part(inline_data=types.Blob(data=data, mime_type=mime))
    scheme = urlparse(url).scheme
    if scheme not in ("http", "https", "gs"):
        raise UpstreamBadRequest(f"Unsupported media URL scheme '{scheme}:'.", param="messages")
    mime = mimetypes.guess_type(urlparse(url).path)[0] or default_mime
    return types.Part(file_data=types.FileData(file_uri=url, mime_type=mime))


def _function_call_part(tc: ToolCall, *, first: bool) -> types.Part:
    try:
        args = json.loads(tc.function.arguments) if tc.function.arguments.strip() else {}
    except json.JSONDecodeError:
        args = {"arguments": tc.function.arguments}
    if not isinstance(args, dict):
        args = {"value": args}
    signature: bytes | None = None
    extra = (tc.model_extra or {}).get("extra_content")
    google_extra = extra.get("google") if isinstance(extra, dict) else None
    raw_sig = google_extra.get("thought_signature") if isinstance(google_extra, dict) else None
    if isinstance(raw_sig, str) and raw_sig:
        try:
            signature = base64.b64decode(raw_sig)
        except (binascii.Error, ValueError):
            signature = None
    if signature is None and first:
        signature = _SKIP_SIGNATURE
    return types.Part(function_call=types.FunctionCall(name=tc.function.name, args=args), thought_signature=signature)


def _tool_result(text: str) -> dict[str, Any]:
    try:
        parsed = json.loads(text)
    except (json.JSONDecodeError, ValueError):
        return {"content": text}
    return parsed if isinstance(parsed, dict) else {"content": parsed}


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
