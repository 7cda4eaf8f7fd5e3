"""Vertex AI text embeddings (text-embedding-005 by default) as a remote encoder.

The google-genai client is the one the Vertex chat provider uses (providers/vertex_client.py), so the
credentials, the endpoint, the transport and the one-attempt retry policy are the same. bootstrap
wraps this encoder in CachedEncoder (cache/embeddings.py): each text is paid for once per TTL.

The predict API of text-embedding-005 takes at most 250 texts and 20,000 tokens a request and
truncates a text beyond 2,048 tokens itself (autoTruncate). A text is cut here first at
MAX_TEXT_BYTES, so that a megabyte prompt does not travel only to be thrown away, and batches are
sized by an upper estimate of their tokens, because the real count is only known after the call.
Blank texts are not sent (the SDK drops empty parts, which would shift the rows): they get a zero
row, as the local encoders give a text without words.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from google import genai
from google.auth import exceptions as auth_exceptions
from google.genai import errors as genai_errors
from google.genai import types

from ..config import Settings
from ..errors import UpstreamUnavailable
from ..providers.vertex_client import TIMEOUT_ERRORS, TRANSPORT_ERRORS, build_client
from ..providers.vertex_credentials import CREDENTIAL_SETTING
from .base import normalise_rows

MAX_TEXTS_PER_REQUEST = 250
MAX_TOKENS_PER_REQUEST = 20_000
# 2,048 tokens is at least 8 KiB of text in any script the model reads; the service truncates
# the rest of a long text anyway
MAX_TEXT_BYTES = 8_192
# a token is rarely shorter than 2 bytes of UTF-8 (English averages about 4)
BYTES_PER_TOKEN_LOW = 2
TASK_TYPE = "SEMANTIC_SIMILARITY"


def clip(text: str, max_bytes: int = MAX_TEXT_BYTES) -> str:
    """The text cut to at most max_bytes of UTF-8, on a character boundary."""
    raw = text.encode("utf-8")
    if len(raw) <= max_bytes:
        return text
    return raw[:max_bytes].decode("utf-8", errors="ignore")


def token_estimate(text: str) -> int:
    """An upper estimate of the tokens the service will count for the text."""
    return max(1, math.ceil(len(text.encode("utf-8")) / BYTES_PER_TOKEN_LOW))


def batches(
    texts: Sequence[str], *, max_texts: int = MAX_TEXTS_PER_REQUEST, max_tokens: int = MAX_TOKENS_PER_REQUEST
) -> list[list[int]]:
    """Positions of the texts grouped into requests within both limits, in order."""
    out: list[list[int]] = []
    current: list[int] = []
    tokens = 0
    for i, text in enumerate(texts):
        cost = token_estimate(text)
        if current and (len(current) >= max_texts or tokens + cost > max_tokens):
            out.append(current)
            current, tokens = [], 0
        current.append(i)
        tokens += cost
    if current:
        out.append(current)
    return out


class VertexEmbeddingEncoder:
    def __init__(
        self,
        client: genai.Client,
        *,
        model: str = "text-embedding-005",
        dim: int = 256,
        max_texts_per_request: int = MAX_TEXTS_PER_REQUEST,
        max_tokens_per_request: int = MAX_TOKENS_PER_REQUEST,
        max_concurrency: int = 4,
        endpoint: str = "Vertex AI",
    ) -> None:
        if dim <= 0:
            raise ValueError("dim must be positive")
        self.client = client
        self.model = model
        self.dim = dim
        # the vector space: another model or size gives vectors that must never be compared
        self.name = f"vertex-{model.rsplit('/', 1)[-1]}-d{dim}"
        self.max_texts_per_request = max_texts_per_request
        self.max_tokens_per_request = max_tokens_per_request
        self.endpoint = endpoint
        self.max_concurrency = max(1, max_concurrency)
        self._config = types.EmbedContentConfig(output_dimensionality=dim, task_type=TASK_TYPE, auto_truncate=True)

    @classmethod
    def from_settings(
        cls, settings: Settings, *, credentials: Any = None, timeout_s: float = 10.0
    ) -> VertexEmbeddingEncoder:
        """Credentials: the given ones (tests), else GOOGLE_APPLICATION_CREDENTIALS_JSON, else ADC."""
        client = build_client(settings, credentials=credentials, timeout_s=timeout_s, max_connections=20)
        return cls(
            client,
            model=settings.vertex_embedding_model,
            dim=settings.vertex_embedding_dim,
            endpoint=settings.vertex_ai_base_url or f"{settings.vertex_ai_location}-aiplatform.googleapis.com",
        )

    async def aclose(self) -> None:
        try:
            await self.client.aio.aclose()
        finally:
            self.client.close()

    async def aencode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        sent = [i for i, t in enumerate(texts) if t.strip()]
        clipped = [clip(texts[i]) for i in sent]
        groups = [
            [sent[j] for j in group]
            for group in batches(clipped, max_texts=self.max_texts_per_request, max_tokens=self.max_tokens_per_request)
        ]
        by_position = dict(zip(sent, clipped, strict=True))
        if len(groups) == 1:
            out[groups[0]] = await self._embed([by_position[i] for i in groups[0]])
        elif groups:
            # per call, not per encoder: a semaphore must not outlive the event loop it waits on
            slots = asyncio.Semaphore(self.max_concurrency)
            try:
                async with asyncio.TaskGroup() as tg:  # the first failure cancels the other requests
                    tasks = [(g, tg.create_task(self._embed([by_position[i] for i in g], slots))) for g in groups]
            except ExceptionGroup as failed:
                raise failed.exceptions[0] from None
            for group, task in tasks:
                out[group] = task.result()
        return normalise_rows(out)

    async def _embed(self, texts: list[str], slots: asyncio.Semaphore | None = None) -> np.ndarray:
        contents: list[types.PartUnion] = list(texts)
        async with slots or contextlib.nullcontext():
            try:
                resp = await self.client.aio.models.embed_content(
                    model=self.model, contents=contents, config=self._config
                )
            except Exception as exc:
                raise self._failure(exc) from None
        rows = [e.values for e in resp.embeddings or []]
        if len(rows) != len(texts) or any(r is None or len(r) != self.dim for r in rows):
            raise UpstreamUnavailable(
                f"Vertex AI embeddings ({self.model}) answered {len(rows)} vectors for {len(texts)} texts "
                f"(expected one of {self.dim} values each)."
            )
        return np.asarray(rows, dtype=np.float32)

    def _failure(self, exc: BaseException) -> UpstreamUnavailable:
        what = f"Vertex AI embeddings ({self.model})"
        if isinstance(exc, genai_errors.APIError):
            code = int(exc.code or 0)
            detail = f"{what} answered HTTP {code}" + (f" {exc.status}" if exc.status else "")
            detail += f": {exc.message}" if exc.message else ""
            if code in (401, 403):
                detail += f" (check {CREDENTIAL_SETTING} or Application Default Credentials)"
            elif code == 404:
                detail += " (check VERTEX_EMBEDDING_MODEL and VERTEX_AI_LOCATION)"
            return UpstreamUnavailable(detail)
        if isinstance(exc, (*TIMEOUT_ERRORS, TimeoutError)):
            return UpstreamUnavailable(f"{what} timed out ({type(exc).__name__}).")
        if isinstance(exc, TRANSPORT_ERRORS):
            return UpstreamUnavailable(
                f"{what}: the connection to {self.endpoint} failed ({type(exc).__name__}: {exc})."
            )
        if isinstance(exc, auth_exceptions.GoogleAuthError):
            return UpstreamUnavailable(
                f"{what}: no usable Google credentials ({type(exc).__name__}: {exc}); set {CREDENTIAL_SETTING} "
                "or configure Application Default Credentials."
            )
        return UpstreamUnavailable(f"{what} failed ({type(exc).__name__}: {exc}).")
