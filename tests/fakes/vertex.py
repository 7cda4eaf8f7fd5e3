"""A fake Vertex AI server that the real google-genai SDK can talk to.

It speaks the REST wire protocol the SDK (3.6) builds in Vertex mode:

    POST {base_url}/{v1|v1beta1}/projects/{p}/locations/{l}/publishers/google/models/{m}:generateContent
    POST ...:streamGenerateContent?alt=sse        (Server-Sent Events, one JSON response per event)
    POST ...publishers/google/models/{m}:predict  (text embeddings: text-embedding-005 and the like)

Answers are deterministic: "Echo: <the first words of the last user turn>". Tokens are counted
as whitespace-separated words (`count_tokens`): promptTokenCount covers every text part of the
system instruction and the contents, candidatesTokenCount the answer, so tests can compare.
`maxOutputTokens` truncates the answer (finishReason MAX_TOKENS), `stopSequences` cut it,
`responseMimeType: application/json` makes it a JSON object, and declared tools are called when
the prompt names one (or always with mode ANY).

Scripted behaviour, consumed one per request, comes from a queue (`fake.push(...)` or the
helpers `fail`, `rate_limit`, `hang`, `break_stream`, `safety_block`, `function_call`, `reply`)
or, for processes that cannot reach the object, from markers in the last user turn:
`[fake:429]` `[fake:429:3]` (Retry-After 3) `[fake:500]` `[fake:503]` `[fake:400]` `[fake:safety]`
`[fake:hang]` `[fake:hang:2.5]` `[fake:break:2]` (disconnect after 2 stream chunks).
Every request is recorded (`fake.requests`: parsed body, headers, path parts, usage returned).

Embeddings (`:predict` with `instances: [{content}]`, `parameters: {outputDimensionality,
autoTruncate}`) are deterministic too: each word of a text adds a fixed pseudo-random vector
(`embedding_of`), so texts that share words get similar vectors. Like a Matryoshka model cut to
`outputDimensionality`, the values returned are the first ones of the full vector, not
re-normalised. The service's limits are enforced (EMBED_MAX_INSTANCES texts and
EMBED_MAX_REQUEST_TOKENS tokens a request, EMBED_MAX_TEXT_TOKENS a text unless autoTruncate),
so a client that does not batch gets the same 400 as from Vertex.

    python -m tests.fakes.vertex --port 8002
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
import json
import re
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

STATUS_TEXT = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
API_VERSIONS = ("v1", "v1beta1")
MARKER = re.compile(r"\[fake:([a-z0-9_]+)(?::([0-9.]+))?\]")
ECHO_WORDS = 12
EMBED_FULL_DIM = 768
EMBED_MAX_INSTANCES = 250
EMBED_MAX_REQUEST_TOKENS = 20_000
EMBED_MAX_TEXT_TOKENS = 2_048


def count_tokens(text: str) -> int:
    return len(text.split())


@functools.lru_cache(maxsize=65_536)
def _word_vector(word: str) -> np.ndarray:
    seed = int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest(), "big")
    return np.random.default_rng(seed).standard_normal(EMBED_FULL_DIM)


def embedding_of(text: str, dim: int = EMBED_FULL_DIM) -> list[float]:
    """The fake's embedding: the unit-norm sum of the text's word vectors, cut to `dim` values."""
    words = re.findall(r"\w+", text.lower())[:EMBED_MAX_TEXT_TOKENS]
    full = np.sum([_word_vector(w) for w in words], axis=0) if words else np.zeros(EMBED_FULL_DIM)
    norm = float(np.linalg.norm(full))
    return [float(x) for x in (full / norm if norm else full)[:dim]]


@dataclass
class Behaviour:
    """One scripted answer. kind: ok | error | hang | break | safety | finish_safety | function_call."""

    kind: str = "ok"
    status: int = 500
    message: str | None = None
    status_text: str | None = None
    retry_after: str | None = None  # Retry-After header
    retry_delay: str | None = None  # google.rpc.RetryInfo retryDelay in the error body ("3s")
    seconds: float | None = None  # hang duration (default: fake.hang_s)
    after_chunks: int = 0  # break/hang: stream chunks sent first
    mode: str = "disconnect"  # break: disconnect | error (an {"error": ...} event mid-stream)
    name: str | None = None  # function_call
    args: dict[str, Any] | None = None
    text: str | None = None  # ok: the answer instead of the echo
    finish_reason: str = "STOP"
    thoughts: int = 0  # ok: add a thought part and this many thoughtsTokenCount


@dataclass
class RecordedRequest:
    method: str
    path: str
    api_version: str
    project: str
    location: str
    model: str
    action: str
    query: dict[str, str]
    headers: dict[str, str]
    body: dict[str, Any]
    behaviour: str = "ok"
    usage: dict[str, int] = field(default_factory=dict)

    @property
    def stream(self) -> bool:
        return self.action == "streamGenerateContent"

    @property
    def generation_config(self) -> dict[str, Any]:
        return dict(self.body.get("generationConfig") or {})

    @property
    def system_text(self) -> str:
        return _texts(self.body.get("systemInstruction"))

    @property
    def contents(self) -> list[dict[str, Any]]:
        return list(self.body.get("contents") or [])

    @property
    def function_declarations(self) -> list[dict[str, Any]]:
        return [d for t in self.body.get("tools") or [] for d in t.get("functionDeclarations") or []]

    @property
    def instances(self) -> list[dict[str, Any]]:
        """The texts of an embeddings (predict) request."""
        return list(self.body.get("instances") or [])

    @property
    def parameters(self) -> dict[str, Any]:
        return dict(self.body.get("parameters") or {})


def _get(obj: dict[str, Any], camel: str) -> Any:
    """A field by its JSON name or its proto name: the SDK sends nested objects it passes through
    unconverted (function declarations, function-calling config, blobs) with snake_case keys,
    and Vertex, like any proto JSON parser, accepts both."""
    if camel in obj:
        return obj[camel]
    return obj.get(re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), camel))


def _schema(decl: dict[str, Any]) -> Any:
    return _get(decl, "parametersJsonSchema") or decl.get("parameters")


def _texts(content: Any) -> str:
    if not isinstance(content, dict):
        return ""
    return "\n".join(p["text"] for p in content.get("parts") or [] if isinstance(p, dict) and "text" in p)


def _sample(schema: Any, text: str) -> Any:
    """A deterministic value matching a JSON schema (strings get the given text)."""
    if not isinstance(schema, dict):
        return text
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if schema.get("enum"):
        return schema["enum"][0]
    if kind == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        required = schema.get("required") or list(props)
        return {k: _sample(props[k], text) for k in required if k in props}
    if kind == "array":
        return [_sample(schema.get("items"), text)]
    if kind == "integer":
        return 1
    if kind == "number":
        return 1.5
    if kind == "boolean":
        return True
    return text


class FakeVertex:
    def __init__(
        self,
        *,
        hang_s: float = 30.0,
        chunk_words: int = 2,
        require_token: str | None = None,
        known_models: set[str] | None = None,
    ) -> None:
        self.hang_s = hang_s
        self.chunk_words = chunk_words
        self.require_token = require_token
        self.known_models = known_models
        self.behaviours: deque[Behaviour] = deque()
        self.requests: list[RecordedRequest] = []
        self._released = False
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port: int | None = None
        route = "/{version}/projects/{project}/locations/{location}/publishers/{publisher}/models/{target}"
        self.app = Starlette(routes=[Route(route, self.handle, methods=["POST"])])

    # --- scripting ----------------------------------------------------------------------------
    def push(self, *behaviours: Behaviour) -> FakeVertex:
        self.behaviours.extend(behaviours)
        return self

    def fail(
        self,
        status: int,
        message: str | None = None,
        *,
        retry_after: str | None = None,
        retry_delay: str | None = None,
        status_text: str | None = None,
    ) -> FakeVertex:
        return self.push(
            Behaviour(
                "error",
                status=status,
                message=message,
                retry_after=retry_after,
                retry_delay=retry_delay,
                status_text=status_text,
            )
        )

    def rate_limit(self, retry_after: str | None = "2", retry_delay: str | None = None) -> FakeVertex:
        return self.fail(
            429,
            "Quota exceeded for aiplatform.googleapis.com/generate_content_requests_per_minute.",
            retry_after=retry_after,
            retry_delay=retry_delay,
        )

    def hang(self, seconds: float | None = None, *, after_chunks: int = 0) -> FakeVertex:
        return self.push(Behaviour("hang", seconds=seconds, after_chunks=after_chunks))

    def break_stream(self, after_chunks: int = 1, mode: str = "disconnect") -> FakeVertex:
        return self.push(Behaviour("break", after_chunks=after_chunks, mode=mode))

    def safety_block(self, *, in_candidate: bool = False) -> FakeVertex:
        return self.push(Behaviour("finish_safety" if in_candidate else "safety"))

    def function_call(self, name: str, args: dict[str, Any] | None = None) -> FakeVertex:
        return self.push(Behaviour("function_call", name=name, args=args))

    def reply(self, text: str, *, finish_reason: str = "STOP", thoughts: int = 0) -> FakeVertex:
        return self.push(Behaviour("ok", text=text, finish_reason=finish_reason, thoughts=thoughts))

    def reset(self) -> None:
        self.behaviours.clear()
        self.requests.clear()

    @property
    def last(self) -> RecordedRequest:
        return self.requests[-1]

    # --- running ------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("the fake Vertex server is not running")
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeVertex:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = int(sock.getsockname()[1])
        config = uvicorn.Config(self.app, log_level="critical", lifespan="off", loop="asyncio")
        self._server = uvicorn.Server(config)
        self._released = False
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the fake Vertex server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._released = True  # ends every hang, so shutdown does not wait for them
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> FakeVertex:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- the endpoint -------------------------------------------------------------------------
    async def handle(self, request: Request) -> Response:
        p = request.path_params
        model, _, action = str(p["target"]).partition(":")
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            return self._error(400, "Invalid JSON payload received.")
        rec = RecordedRequest(
            method=request.method,
            path=request.url.path,
            api_version=p["version"],
            project=p["project"],
            location=p["location"],
            model=model,
            action=action,
            query=dict(request.query_params),
            headers=dict(request.headers),
            body=body,
        )
        self.requests.append(rec)
        actions = ("generateContent", "streamGenerateContent", "predict")
        if p["version"] not in API_VERSIONS or p["publisher"] != "google" or action not in actions:
            return self._error(404, f"Unknown method {request.url.path}.")
        if self.require_token is not None and request.headers.get("authorization") != f"Bearer {self.require_token}":
            return self._error(401, "Request had invalid authentication credentials.")
        if self.known_models is not None and model not in self.known_models:
            return self._error(
                404,
                f"Publisher Model `projects/{p['project']}/locations/{p['location']}/publishers/google/models/"
                f"{model}` was not found or your project does not have access to it.",
            )
        behaviour = self.behaviours.popleft() if self.behaviours else self._from_markers(body)
        rec.behaviour = behaviour.kind
        if behaviour.kind == "error":
            return self._error(
                behaviour.status,
                behaviour.message or f"fake error {behaviour.status}",
                status_text=behaviour.status_text,
                retry_after=behaviour.retry_after,
                retry_delay=behaviour.retry_delay,
            )
        if behaviour.kind == "hang" and not (rec.stream and behaviour.after_chunks):
            await self._sleep(behaviour.seconds)
            behaviour = Behaviour("ok")
        if action == "predict":
            return self._embeddings(body, rec)
        responses = self._responses(body, model, behaviour, rec)
        if not rec.stream:
            return JSONResponse(_merge(responses))
        if rec.query.get("alt") != "sse":
            return JSONResponse(responses)
        return StreamingResponse(self._sse(responses, behaviour), media_type="text/event-stream")

    async def _sse(self, responses: list[dict[str, Any]], behaviour: Behaviour) -> AsyncIterator[bytes]:
        for i, resp in enumerate(responses):
            if behaviour.kind in ("break", "hang") and i == behaviour.after_chunks:
                if behaviour.kind == "hang":
                    await self._sleep(behaviour.seconds)
                elif behaviour.mode == "error":
                    err = {"error": {"code": 503, "message": "The stream was interrupted.", "status": "UNAVAILABLE"}}
                    yield f"data: {json.dumps(err)}\r\n\r\n".encode()
                    return
                else:
                    raise ConnectionAbortedError("fake Vertex: stream broken on purpose")
            yield f"data: {json.dumps(resp)}\r\n\r\n".encode()
            await asyncio.sleep(0)

    async def _sleep(self, seconds: float | None) -> None:
        end = time.monotonic() + (self.hang_s if seconds is None else seconds)
        while time.monotonic() < end and not self._released:
            await asyncio.sleep(0.02)

    def _error(
        self,
        status: int,
        message: str,
        *,
        status_text: str | None = None,
        retry_after: str | None = None,
        retry_delay: str | None = None,
    ) -> Response:
        err: dict[str, Any] = {
            "code": status,
            "message": message,
            "status": status_text or STATUS_TEXT.get(status, "UNKNOWN"),
        }
        if retry_delay is not None:
            err["details"] = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry_delay}]
        headers = {"retry-after": retry_after} if retry_after is not None else None
        return JSONResponse({"error": err}, status_code=status, headers=headers)

    # --- answers ------------------------------------------------------------------------------
    def _from_markers(self, body: dict[str, Any]) -> Behaviour:
        contents = body.get("contents") or []
        users = [c for c in contents if c.get("role", "user") == "user"]
        text = _texts(users[-1]) if users else " ".join(str(i.get("content", "")) for i in body.get("instances") or [])
        match = MARKER.search(text)
        if match is None:
            return Behaviour("ok")
        word, arg = match.group(1), match.group(2)
        if word.isdigit():
            status = int(word)
            if status == 429:
                return Behaviour("error", status=429, message="Quota exceeded.", retry_after=arg or "1")
            return Behaviour("error", status=status)
        if word == "safety":
            return Behaviour("safety")
        if word == "hang":
            return Behaviour("hang", seconds=float(arg) if arg else None)
        if word == "break":
            return Behaviour("break", after_chunks=int(float(arg or 1)))
        return Behaviour("ok")

    def _embeddings(self, body: dict[str, Any], rec: RecordedRequest) -> Response:
        instances = body.get("instances")
        params = body.get("parameters") or {}
        if not isinstance(instances, list) or not instances:
            return self._error(400, "instances must be a non-empty list.")
        if len(instances) > EMBED_MAX_INSTANCES:
            return self._error(400, f"{len(instances)} instances; the limit is {EMBED_MAX_INSTANCES}.")
        dim = params.get("outputDimensionality") or EMBED_FULL_DIM
        if not isinstance(dim, int) or not 1 <= dim <= EMBED_FULL_DIM:
            return self._error(400, f"outputDimensionality must be between 1 and {EMBED_FULL_DIM}.")
        truncate = params.get("autoTruncate", True) is not False
        texts = [str(i.get("content") or "") if isinstance(i, dict) else "" for i in instances]
        counts = [count_tokens(t) for t in texts]
        if sum(counts) > EMBED_MAX_REQUEST_TOKENS:
            return self._error(
                400,
                f"Unable to submit request because the input token count is {sum(counts)} "
                f"but the model supports up to {EMBED_MAX_REQUEST_TOKENS}.",
            )
        if not truncate and max(counts) > EMBED_MAX_TEXT_TOKENS:
            return self._error(400, f"An instance has {max(counts)} tokens; the limit is {EMBED_MAX_TEXT_TOKENS}.")
        predictions = [
            {
                "embeddings": {
                    "values": embedding_of(t, dim),
                    "statistics": {
                        "token_count": min(n, EMBED_MAX_TEXT_TOKENS),
                        "truncated": n > EMBED_MAX_TEXT_TOKENS,
                    },
                }
            }
            for t, n in zip(texts, counts, strict=True)
        ]
        rec.usage = {"promptTokenCount": sum(min(n, EMBED_MAX_TEXT_TOKENS) for n in counts)}
        return JSONResponse({"predictions": predictions, "metadata": {"billableCharacterCount": sum(map(len, texts))}})

    def _responses(
        self, body: dict[str, Any], model: str, behaviour: Behaviour, rec: RecordedRequest
    ) -> list[dict[str, Any]]:
        """The answer as the list of stream events; a non-streamed answer is their merge."""
        prompt = count_tokens(_texts(body.get("systemInstruction")))
        prompt += sum(count_tokens(_texts(c)) for c in body.get("contents") or [])
        meta = {"modelVersion": model, "responseId": uuid.uuid4().hex[:22], "createTime": "2025-01-01T00:00:00Z"}
        if behaviour.kind == "safety":
            rec.usage = {"promptTokenCount": prompt, "totalTokenCount": prompt}
            return [
                {
                    "promptFeedback": {
                        "blockReason": "SAFETY",
                        "safetyRatings": [
                            {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True}
                        ],
                    },
                    "usageMetadata": dict(rec.usage),
                    **meta,
                }
            ]
        if behaviour.kind == "finish_safety":
            rec.usage = {"promptTokenCount": prompt, "totalTokenCount": prompt}
            cand = {"content": {"role": "model"}, "finishReason": "SAFETY", "index": 0}
            return [{"candidates": [cand], "usageMetadata": dict(rec.usage), **meta}]

        call = self._function_call(body, behaviour)
        if call is not None:
            completion = count_tokens(call["name"]) + count_tokens(json.dumps(call["args"]))
            rec.usage = {
                "promptTokenCount": prompt,
                "candidatesTokenCount": completion,
                "totalTokenCount": prompt + completion,
            }
            part = {"functionCall": call, "thoughtSignature": "ZmFrZS1zaWduYXR1cmU="}
            cand = {"content": {"role": "model", "parts": [part]}, "finishReason": "STOP", "index": 0}
            return [{"candidates": [cand], "usageMetadata": dict(rec.usage), **meta}]

        words, finish = self._answer_words(body, behaviour)
        thoughts = behaviour.thoughts
        completion = len(words)
        rec.usage = {
            "promptTokenCount": prompt,
            "candidatesTokenCount": completion,
            "totalTokenCount": prompt + completion + thoughts,
        }
        if thoughts:
            rec.usage["thoughtsTokenCount"] = thoughts
        size = max(1, self.chunk_words)
        groups = [words[i : i + size] for i in range(0, len(words), size)] or [[]]
        events: list[dict[str, Any]] = []
        sent = 0
        for i, group in enumerate(groups):
            sent += len(group)
            last = i == len(groups) - 1
            text = " ".join(group) + ("" if last else " ")
            parts: list[dict[str, Any]] = []
            if i == 0 and thoughts:
                parts.append({"text": "Thinking about it.", "thought": True})
            if text:
                parts.append({"text": text})
            cand: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
            usage = {"promptTokenCount": prompt, "candidatesTokenCount": sent, "totalTokenCount": prompt + sent}
            if last:
                cand["finishReason"] = finish
                usage = dict(rec.usage)
            events.append({"candidates": [cand], "usageMetadata": usage, **meta})
        return events

    def _answer_words(self, body: dict[str, Any], behaviour: Behaviour) -> tuple[list[str], str]:
        contents = body.get("contents") or []
        gen = body.get("generationConfig") or {}
        last = contents[-1] if contents else {}
        responses = [p["functionResponse"] for p in last.get("parts") or [] if "functionResponse" in p]
        if behaviour.text is not None:
            text = behaviour.text
        elif responses:
            text = " ".join(
                f"Tool {r.get('name')} returned {json.dumps(r.get('response'), sort_keys=True)}." for r in responses
            )
        else:
            users = [c for c in contents if c.get("role", "user") == "user"]
            echo = " ".join(_texts(users[-1]).split()[:ECHO_WORDS]) if users else ""
            if gen.get("responseMimeType") == "application/json":
                schema = gen.get("responseJsonSchema") or gen.get("responseSchema")
                value = _sample(schema, echo) if schema else {"echo": echo}
                text = json.dumps(value)
            else:
                text = f"Echo: {echo}"
        finish = behaviour.finish_reason
        for stop in gen.get("stopSequences") or []:
            if stop and stop in text:
                text = text[: text.index(stop)]
        words = text.split()
        limit = gen.get("maxOutputTokens")
        if isinstance(limit, int) and len(words) > limit:
            words, finish = words[:limit], "MAX_TOKENS"
        return words, finish

    def _function_call(self, body: dict[str, Any], behaviour: Behaviour) -> dict[str, Any] | None:
        decls = [d for t in body.get("tools") or [] for d in t.get("functionDeclarations") or []]
        if behaviour.kind == "function_call":
            decl = next((d for d in decls if d.get("name") == behaviour.name), {})
            schema = _schema(decl)
            args = behaviour.args if behaviour.args is not None else _sample(schema or {"type": "object"}, "test")
            return {"name": behaviour.name or (decls[0]["name"] if decls else "tool"), "args": args}
        if not decls or behaviour.kind != "ok" or behaviour.text is not None:
            return None
        fcc = _get(body.get("toolConfig") or {}, "functionCallingConfig") or {}
        mode = fcc.get("mode", "AUTO")
        allowed = _get(fcc, "allowedFunctionNames") or [d.get("name") for d in decls]
        contents = body.get("contents") or []
        last = contents[-1] if contents else {}
        if mode == "NONE" or any("functionResponse" in p for p in last.get("parts") or []):
            return None
        prompt = _texts(last).lower()
        chosen = None
        if mode == "ANY":
            chosen = next((d for d in decls if d.get("name") in allowed), None)
        else:
            chosen = next((d for d in decls if str(d.get("name", "")).lower() in prompt), None)
        if chosen is None:
            return None
        schema = _schema(chosen) or {"type": "object"}
        return {"name": chosen["name"], "args": _sample(schema, "test")}


def _merge(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The non-streamed response: the stream's events folded into one."""
    merged = dict(events[-1])
    parts: list[dict[str, Any]] = []
    for e in events:
        for c in e.get("candidates") or []:
            parts.extend((c.get("content") or {}).get("parts") or [])
    if merged.get("candidates"):
        cand = dict(merged["candidates"][0])
        text_parts = [p for p in parts if "text" in p and not p.get("thought")]
        other = [p for p in parts if "text" not in p or p.get("thought")]
        joined = [{"text": "".join(p["text"] for p in text_parts)}] if text_parts else []
        content = dict(cand.get("content") or {"role": "model"})
        if other or joined:
            content["parts"] = other + joined
        cand["content"] = content
        merged["candidates"] = [cand]
    return merged


def serve(fake: FakeVertex | None = None) -> Iterator[FakeVertex]:
    """For a pytest fixture: `yield from serve()`."""
    fake = fake or FakeVertex()
    with fake:
        yield fake


def service_account_info() -> dict[str, str]:
    """A service-account JSON with a freshly made RSA key: what GOOGLE_APPLICATION_CREDENTIALS_JSON
    holds in tests (google-auth loads it without any network call)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return {
        "type": "service_account",
        "project_id": "test-project",
        "private_key_id": "k1",
        "private_key": pem,
        "client_email": "router@test-project.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8002)
    parser.add_argument("--require-token", default=None)
    args = parser.parse_args()
    fake = FakeVertex(require_token=args.require_token)
    print(f"fake Vertex AI on http://{args.host}:{args.port} (set VERTEX_AI_BASE_URL to it)", flush=True)
    uvicorn.run(fake.app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
