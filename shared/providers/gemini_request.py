"""OpenAI chat requests to Gemini's google-genai types: messages, content parts, tools,
tool_choice, generation parameters and response_format become `contents` +
`GenerateContentConfig`. Pure, no I/O; a request Gemini cannot express raises UpstreamBadRequest.
The way back is gemini_response.py.
"""

from __future__ import annotations

import base64
import binascii
import json
import mimetypes
import re
from typing import Any
from urllib.parse import unquote_to_bytes, urlparse

from google.genai import types

from ..errors import UpstreamBadRequest
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

# Gemini 3 rejects a replayed function call without its thought signature. When the caller's
# history does not carry one (see _function_call_part), this documented placeholder skips the check.
_SKIP_SIGNATURE = b"skip_thought_signature_validator"


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
