"""Token estimates for routing (context-window checks, cost estimates) and for streams that
end without usage. A fast heuristic, not a tokenizer: about 4 characters per token for
English text, plus the per-message framing OpenAI documents (~4 tokens)."""

from __future__ import annotations

import math

from .schemas import ChatCompletionRequest

CHARS_PER_TOKEN = 4.0
PER_MESSAGE = 4


def estimate_text_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN) if text else 0


def estimate_prompt_tokens(req: ChatCompletionRequest) -> int:
    total = 3
    for m in req.messages:
        total += PER_MESSAGE + estimate_text_tokens(m.text())
        if m.has_image():
            total += 258  # Gemini bills an image at 258 tokens
    if req.tools:
        total += sum(estimate_text_tokens(t.model_dump_json()) for t in req.tools)
    return total
