"""A fake OpenAI-compatible model server: POST /v1/chat/completions (JSON and SSE streams).

Answers deterministically and counts tokens as whitespace-separated words, so tests can check
usage and cost exactly. Behaviour is scripted per model name through `FakeOpenAI.script`:
a list of actions consumed one per request ("ok", "429", "500", "hang", "break_before",
"break_after", "no_usage", "content_filter", "context", "huge_usage": usage beyond PostgreSQL's
integer column, "slow": a stream with `slow_s` between its chunks; `streams_ended_early` counts the
streams whose reader went away before the last chunk). What a model says can be scripted too: `FakeOpenAI.responders[model]` is called
with each request body and returns the answer text, or None for the default echo (so one upstream
model can play an answering model and a judge). Requests are recorded.

    python -m tests.fakes.openai_upstream --port 8001
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

HUGE_USAGE = 3_000_000_000  # what a misbehaving upstream may report: more than an int4 holds


def count_tokens(text: str) -> int:
    return len(text.split())


def prompt_tokens(body: dict[str, Any]) -> int:
    total = 0
    for m in body.get("messages", []):
        c = m.get("content")
        if isinstance(c, str):
            total += count_tokens(c)
        elif isinstance(c, list):
            total += sum(count_tokens(p.get("text", "")) for p in c if isinstance(p, dict))
    return total


class FakeOpenAI:
    def __init__(self, hang_s: float = 30.0) -> None:
        self.script: dict[str, deque[str]] = defaultdict(deque)
        self.always: dict[str, str] = {}  # model -> action for every request (after the script)
        self.responders: dict[str, Callable[[dict[str, Any]], str | None]] = {}
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.hang_s = hang_s
        self.slow_s = 0.2
        self.streams_ended_early = 0
        self._ids = itertools.count(1)
        self.app = Starlette(
            routes=[Route("/v1/chat/completions", self.chat, methods=["POST"]), Route("/v1/models", self.models)]
        )

    def push(self, model: str, *actions: str) -> None:
        self.script[model].extend(actions)

    def answer_for(self, body: dict[str, Any]) -> str:
        responder = self.responders.get(body.get("model", ""))
        said = responder(body) if responder is not None else None
        if said is not None:
            return said
        msgs = body.get("messages") or [{}]
        last = msgs[-1].get("content")
        text = last if isinstance(last, str) else "content"
        words = text.split()[:8]
        return f"Answer from {body.get('model')}: " + " ".join(words)

    def calls(self, model: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.requests if model is None or r.get("model") == model]

    async def models(self, request: Request) -> Response:
        return Response(orjson.dumps({"object": "list", "data": []}), media_type="application/json")

    async def chat(self, request: Request) -> Response:
        body = orjson.loads(await request.body())
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        model = body.get("model", "")
        action = self.script[model].popleft() if self.script[model] else self.always.get(model, "ok")
        if action == "429":
            return self._error(429, "rate limited", "rate_limit_exceeded", {"retry-after": "0"})
        if action == "500":
            return self._error(500, "internal error", "server_error")
        if action == "context":
            return self._error(400, "This model's maximum context length is 10 tokens", "context_length_exceeded")
        if action == "hang":
            await asyncio.sleep(self.hang_s)
        if action == "break_before" and body.get("stream"):
            return self._error(503, "overloaded", "server_error")
        answer = self.answer_for(body)
        pt, ct = prompt_tokens(body), count_tokens(answer)
        if action == "huge_usage":
            pt = HUGE_USAGE
        cid = f"chatcmpl-fake{next(self._ids)}"
        if body.get("stream"):
            return StreamingResponse(
                self._stream(cid, model, answer, pt, ct, action, body), media_type="text/event-stream"
            )
        finish = "content_filter" if action == "content_filter" else "stop"
        message: dict[str, Any] = {"role": "assistant", "content": answer}
        if body.get("tools") and "call a tool" in answer.lower():
            fn = body["tools"][0]["function"]["name"]
            message = {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": fn, "arguments": "{}"}}],
            }
            finish = "tool_calls"
        out: dict[str, Any] = {
            "id": cid,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        }
        if action != "no_usage":
            out["usage"] = {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct}
        return Response(orjson.dumps(out), media_type="application/json")

    async def _stream(
        self, cid: str, model: str, answer: str, pt: int, ct: int, action: str, body: dict[str, Any]
    ) -> AsyncIterator[bytes]:
        base = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
        yield (
            b"data: "
            + orjson.dumps(
                {
                    **base,
                    "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}],
                }
            )
            + b"\n\n"
        )
        words = answer.split(" ")
        done = False
        try:
            async for chunk in self._words(base, words, action):
                yield chunk
            done = True
        finally:
            if not done:
                self.streams_ended_early += 1
        async for chunk in self._tail(base, pt, ct, action, body):
            yield chunk

    async def _words(self, base: dict[str, Any], words: list[str], action: str) -> AsyncIterator[bytes]:
        for i, word in enumerate(words):
            if action == "slow" and i > 0:
                await asyncio.sleep(self.slow_s)
            if action == "break_after" and i == 2:
                raise RuntimeError("fake upstream breaks the stream")
            piece = word if i == 0 else " " + word
            yield (
                b"data: "
                + orjson.dumps({**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]})
                + b"\n\n"
            )

    async def _tail(
        self, base: dict[str, Any], pt: int, ct: int, action: str, body: dict[str, Any]
    ) -> AsyncIterator[bytes]:
        yield (
            b"data: "
            + orjson.dumps({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
            + b"\n\n"
        )
        wants_usage = (body.get("stream_options") or {}).get("include_usage")
        if wants_usage and action != "no_usage":
            yield (
                b"data: "
                + orjson.dumps(
                    {
                        **base,
                        "choices": [],
                        "usage": {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct},
                    }
                )
                + b"\n\n"
            )
        yield b"data: [DONE]\n\n"

    def _error(self, status: int, message: str, code: str, headers: dict[str, str] | None = None) -> Response:
        body = {"error": {"message": message, "type": code, "param": None, "code": code}}
        return Response(orjson.dumps(body), status_code=status, headers=headers, media_type="application/json")


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--fail-model", action="append", default=[], help="answer 500 for this upstream model")
    args = parser.parse_args()
    fake = FakeOpenAI()
    for model in args.fail_model:
        fake.always[model] = "500"
    uvicorn.run(fake.app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
