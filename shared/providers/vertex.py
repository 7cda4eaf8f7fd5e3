"""Gemini models on Vertex AI, called through the google-genai SDK (async API).

The SDK's own retries are switched off (`HttpRetryOptions(attempts=1)`: one attempt, and no
implicit reconnect either) because the service owns the one retry loop. Requests arrive in the
OpenAI shape and leave in it: messages, tools and generation parameters are mapped to Gemini's
`contents`/`GenerateContentConfig`, and the answer back to `chat.completion` (or chunks). Every
failure, including the SDK's and httpx's own exceptions, is raised as a typed UpstreamError.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import mimetypes
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any
from urllib.parse import unquote_to_bytes, urlparse

import httpx
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from ..catalog import ModelSpec
from ..config import Settings, secret_value
from ..errors import (
    ContentFiltered,
    ContextTooLong,
    ProviderNotConfigured,
    UpstreamBadRequest,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)
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
from .base import Chunk, Completion, Timeouts
from .openai_compat import retry_after

try:  # the SDK can use either httpx or httpx2; we ask for httpx, but map both
    import httpx2

    _TIMEOUT_EXC: tuple[type[BaseException], ...] = (httpx.TimeoutException, httpx2.TimeoutException)
    _TRANSPORT_EXC: tuple[type[BaseException], ...] = (httpx.TransportError, httpx2.TransportError)
except ImportError:  # pragma: no cover - httpx2 is optional
    _TIMEOUT_EXC = (httpx.TimeoutException,)
    _TRANSPORT_EXC = (httpx.TransportError,)

SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
CREDENTIAL_SETTING = "GOOGLE_APPLICATION_CREDENTIALS_JSON"

# carries the per-call connect timeout from build_request to RouterTransport
_CONNECT_TIMEOUT_HEADER = "x-llm-router-connect-timeout"

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
_TOKEN_LIMIT_WORDING = (
    "exceeds the maximum number of tokens",
    "input token count",
    "maximum context length",
    "too many tokens",
)


class RouterTransport(httpx.AsyncBaseTransport):
    """The httpx transport under the SDK.

    Handing the SDK a transport makes it use httpx (not aiohttp, whose timeout is a total one
    that would cut long streams; nor its default httpx2). This transport then keeps one
    connection pool per event loop (pooled connections belong to the loop that opened them),
    never retries a connection, and applies the per-call connect timeout that the SDK cannot
    express: it sends one timeout for every phase, so the connect timeout travels in a request
    header that is removed here, before anything goes on the wire.
    """

    def __init__(
        self,
        *,
        limits: httpx.Limits | None = None,
        factory: Callable[[], httpx.AsyncBaseTransport] | None = None,
    ) -> None:
        self._limits = limits or httpx.Limits()
        self._factory = factory or (lambda: httpx.AsyncHTTPTransport(retries=0, limits=self._limits))
        self._pools: dict[asyncio.AbstractEventLoop, httpx.AsyncBaseTransport] = {}
        self._lock = threading.Lock()

    def _pool(self) -> httpx.AsyncBaseTransport:
        loop = asyncio.get_running_loop()
        with self._lock:
            for stale in [lp for lp in self._pools if lp.is_closed()]:
                del self._pools[stale]
            pool = self._pools.get(loop)
            if pool is None:
                pool = self._pools[loop] = self._factory()
            return pool

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        raw = request.headers.get(_CONNECT_TIMEOUT_HEADER)
        if raw is not None:
            del request.headers[_CONNECT_TIMEOUT_HEADER]
            with contextlib.suppress(ValueError):
                timeout = dict(request.extensions.get("timeout") or {})
                timeout["connect"] = float(raw)
                request.extensions = {**request.extensions, "timeout": timeout}
        return await self._pool().handle_async_request(request)

    async def aclose(self) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            pools, self._pools = self._pools, {}
        for owner, pool in pools.items():
            if owner is loop:
                await pool.aclose()
            # a pool of another (or closed) loop cannot be closed from here; dropping it lets
            # the garbage collector release its sockets


def new_client(
    *,
    project: str,
    location: str,
    base_url: str | None = None,
    credentials: Any = None,
    max_connections: int = 200,
    timeout_s: float | None = None,
    connect_s: float = 5.0,
) -> genai.Client:
    """The google-genai client every Vertex AI part uses (chat provider, embeddings encoder).

    timeout_s: a default for every call (a call's own http_options override it); None leaves
    each call to set its own, as the chat provider does.
    """
    http_options = types.HttpOptions(
        base_url=base_url,
        # attempts=1: tenacity stops after the first try, and the SDK's implicit
        # reconnect-and-retry (aiohttp path) is skipped whenever retry_options is set.
        retry_options=types.HttpRetryOptions(attempts=1),
        async_client_args={
            "transport": RouterTransport(
                limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
            ),
            "timeout": httpx.Timeout(60.0, connect=connect_s),
        },
    )
    if timeout_s is not None:
        # the SDK hands httpx one timeout for every phase: the connect one travels in a header
        http_options.timeout = max(1, int(timeout_s * 1000))
        http_options.headers = {_CONNECT_TIMEOUT_HEADER: f"{connect_s:g}"}
    return genai.Client(
        vertexai=True,
        project=project,
        location=location,
        credentials=credentials,
        http_options=http_options,
    )


def project_and_credentials(settings: Settings, credentials: Any = None) -> tuple[str, Any]:
    """Credentials: the given ones (tests), else GOOGLE_APPLICATION_CREDENTIALS_JSON, else ADC (None)."""
    if not settings.google_cloud_project_id:
        raise ProviderNotConfigured("Vertex AI needs GOOGLE_CLOUD_PROJECT_ID.")
    if credentials is None:
        credentials = credentials_from_json(secret_value(settings.google_application_credentials_json))
    return settings.google_cloud_project_id, credentials


def build_client(
    settings: Settings,
    *,
    credentials: Any = None,
    timeout_s: float | None = None,
    connect_s: float = 5.0,
    max_connections: int = 200,
) -> genai.Client:
    """new_client() for the project, location and endpoint in the settings."""
    project, credentials = project_and_credentials(settings, credentials)
    return new_client(
        project=project,
        location=settings.vertex_ai_location,
        base_url=settings.vertex_ai_base_url,
        credentials=credentials,
        max_connections=max_connections,
        timeout_s=timeout_s,
        connect_s=connect_s,
    )


class VertexProvider:
    def __init__(
        self,
        *,
        project: str,
        location: str,
        base_url: str | None = None,
        credentials: Any = None,
        max_connections: int = 200,
    ) -> None:
        self.project = project
        self.location = location
        self.base_url = base_url
        self._client = new_client(
            project=project,
            location=location,
            base_url=base_url,
            credentials=credentials,
            max_connections=max_connections,
        )

    @classmethod
    def from_settings(cls, settings: Settings, *, credentials: Any = None) -> VertexProvider:
        """Credentials: the given ones (tests), else GOOGLE_APPLICATION_CREDENTIALS_JSON, else ADC."""
        project, credentials = project_and_credentials(settings, credentials)
        return cls(
            project=project,
            location=settings.vertex_ai_location,
            base_url=settings.vertex_ai_base_url,
            credentials=credentials,
        )

    async def aclose(self) -> None:
        try:
            await self._client.aio.aclose()
        finally:
            self._client.close()

    # --- calls ------------------------------------------------------------------------------

    async def complete(self, req: ChatCompletionRequest, model: ModelSpec, timeouts: Timeouts) -> Completion:
        try:
            contents, config = build_request(req, timeouts.read_s, timeouts.connect_s)
            resp = await self._client.aio.models.generate_content(
                model=model.upstream_model, contents=contents, config=config
            )
        except UpstreamError as exc:
            exc.model = exc.model or model.id
            raise
        except Exception as exc:
            raise self._error(exc, model) from None
        return completion_from_response(resp, model)

    async def stream(self, req: ChatCompletionRequest, model: ModelSpec, timeouts: Timeouts) -> AsyncIterator[Chunk]:
        chunk_id = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> Chunk:
            return {
                "id": chunk_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model.id,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
            }

        sent_role = False
        produced = False
        tool_index = 0
        finish: str | None = None
        usage: types.GenerateContentResponseUsageMetadata | None = None
        upstream: Any = None
        try:
            contents, config = build_request(req, timeouts.stream_idle_s, timeouts.connect_s)
            upstream = await self._client.aio.models.generate_content_stream(
                model=model.upstream_model, contents=contents, config=config
            )
            async for resp in upstream:
                _raise_if_prompt_blocked(resp, model)
                if resp.usage_metadata is not None:
                    usage = resp.usage_metadata
                cand = resp.candidates[0] if resp.candidates else None
                if cand is None:
                    continue
                text, calls = _parts(cand)
                delta: dict[str, Any] = {}
                if text:
                    delta["content"] = text
                if calls:
                    delta["tool_calls"] = [{"index": tool_index + i, **c} for i, c in enumerate(calls)]
                    tool_index += len(calls)
                if cand.finish_reason is not None:
                    finish = _enum_name(cand.finish_reason)
                if delta:
                    produced = True
                    if not sent_role:
                        delta = {"role": "assistant", **delta}
                        sent_role = True
                    yield chunk(delta)
        except UpstreamError as exc:
            exc.model = exc.model or model.id
            raise
        except Exception as exc:
            raise self._error(exc, model) from None
        finally:
            aclose = getattr(upstream, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):  # closing a finished or broken stream is best effort
                    await aclose()
        if finish is None:
            raise UpstreamUnavailable(f"{model.id} stream ended without a finish reason.", model=model.id)
        if not produced and finish in _FILTER_REASONS:
            raise ContentFiltered(f"{model.id} blocked the response ({finish}).", model=model.id)
        if not sent_role:
            yield chunk({"role": "assistant", "content": ""})
        yield chunk({}, "tool_calls" if tool_index else _finish_reason(finish))
        final = chunk({})
        final["choices"] = []
        final["usage"] = _usage(usage)
        yield final

    # --- errors -----------------------------------------------------------------------------

    def _error(self, exc: BaseException, model: ModelSpec) -> UpstreamError:
        if isinstance(exc, genai_errors.APIError):
            return api_error(exc, model, project=self.project, location=self.location)
        if isinstance(exc, (*_TIMEOUT_EXC, TimeoutError)):
            return UpstreamTimeout(f"{model.id} timed out ({type(exc).__name__}).", model=model.id)
        if isinstance(exc, _TRANSPORT_EXC):
            where = self.base_url or f"{self.location}-aiplatform.googleapis.com"
            return UpstreamUnavailable(
                f"{model.id}: the connection to Vertex AI at {where} failed ({type(exc).__name__}: {exc}).",
                model=model.id,
            )
        from google.auth import exceptions as auth_exceptions

        if isinstance(exc, auth_exceptions.GoogleAuthError):
            return UpstreamUnavailable(
                f"{model.id}: no usable Google credentials ({type(exc).__name__}: {exc}); set "
                f"{CREDENTIAL_SETTING} or configure Application Default Credentials.",
                model=model.id,
            )
        if isinstance(exc, genai_errors.UnknownApiResponseError):
            return UpstreamUnavailable(f"{model.id} returned a body that is not JSON.", model=model.id)
        if isinstance(exc, ValueError | TypeError):
            # the SDK validates the request locally (unsupported field, bad schema...)
            return UpstreamBadRequest(f"{model.id}: the request cannot be sent to Vertex AI: {exc}", model=model.id)
        return UpstreamUnavailable(f"{model.id} failed ({type(exc).__name__}: {exc}).", model=model.id)


def credentials_from_json(raw: str | None) -> Any:
    """Credentials from a service-account or external_account JSON, built in memory only."""
    if not raw:
        return None
    import google.auth
    from google.auth import exceptions as auth_exceptions

    try:
        info = json.loads(raw)
    except json.JSONDecodeError:
        raise ProviderNotConfigured(f"{CREDENTIAL_SETTING} is not valid JSON.") from None
    if not isinstance(info, dict):
        raise ProviderNotConfigured(f"{CREDENTIAL_SETTING} must hold a JSON object.")
    try:
        creds, _ = google.auth.load_credentials_from_dict(info, scopes=SCOPES)  # type: ignore[no-untyped-call]
    except auth_exceptions.GoogleAuthError as exc:
        raise ProviderNotConfigured(f"{CREDENTIAL_SETTING} holds unusable credentials: {exc}") from None
    return creds


# --- OpenAI → Gemini -------------------------------------------------------------------------


def build_request(
    req: ChatCompletionRequest, timeout_s: float, connect_s: float
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
        "http_options": types.HttpOptions(
            timeout=max(1, int(timeout_s * 1000)),
            headers={_CONNECT_TIMEOUT_HEADER: f"{connect_s:g}"},
        ),
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


# --- errors ------------------------------------------------------------------------------------


def _retry_delay(details: Any) -> float | None:
    """RetryInfo.retryDelay ("3s", "0.5s") from a google.rpc error body, if present."""
    err = details.get("error", details) if isinstance(details, Mapping) else None
    items = err.get("details") if isinstance(err, Mapping) else None
    for item in items if isinstance(items, list) else []:
        if isinstance(item, Mapping) and str(item.get("@type", "")).endswith("google.rpc.RetryInfo"):
            raw = item.get("retryDelay")
            if isinstance(raw, str) and raw.endswith("s"):
                try:
                    return max(0.0, float(raw[:-1]))
                except ValueError:
                    return None
            if isinstance(raw, Mapping):
                return float(raw.get("seconds", 0) or 0) + float(raw.get("nanos", 0) or 0) / 1e9
    return None


def api_error(exc: genai_errors.APIError, model: ModelSpec, *, project: str, location: str) -> UpstreamError:
    code = int(exc.code or 0)
    status = str(exc.status or "")
    message = str(exc.message or "")
    detail = f"{model.id}: Vertex AI answered HTTP {code}" + (f" {status}" if status else "")
    detail += f": {message}" if message else ""
    lowered = message.lower()
    if code == 429 or status == "RESOURCE_EXHAUSTED":
        headers = getattr(exc.response, "headers", None)
        after = retry_after(headers) if headers is not None else None
        if after is None:
            after = _retry_delay(exc.details)
        return UpstreamRateLimited(detail, model=model.id, retry_after_s=after)
    if code in (408, 504) or status == "DEADLINE_EXCEEDED":
        return UpstreamTimeout(detail, model=model.id)
    if code >= 500 or status in ("UNAVAILABLE", "INTERNAL"):
        return UpstreamUnavailable(detail, model=model.id)
    if code in (401, 403) or status in ("UNAUTHENTICATED", "PERMISSION_DENIED"):
        return UpstreamUnavailable(
            f"{detail} (check {CREDENTIAL_SETTING} or Application Default Credentials, and that the "
            f"identity may call Vertex AI in project '{project}')",
            model=model.id,
        )
    if code == 404 or status == "NOT_FOUND":
        return UpstreamUnavailable(
            f"{detail} (check upstream_model '{model.upstream_model}' in the catalog and VERTEX_AI_LOCATION "
            f"'{location}')",
            model=model.id,
        )
    if any(w in lowered for w in _TOKEN_LIMIT_WORDING):
        return ContextTooLong(detail, model=model.id)
    if 400 <= code < 500:
        return UpstreamBadRequest(detail, model=model.id)
    return UpstreamUnavailable(detail, model=model.id)
