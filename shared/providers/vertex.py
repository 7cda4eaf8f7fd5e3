"""Gemini models on Vertex AI, called through the google-genai SDK (async API).

Requests arrive in the OpenAI shape and leave in it (gemini_request.py, gemini_response.py); the client, its
credentials and its transport come from vertex_client.py, with the SDK's own retries off because
the service owns the one retry loop. Every failure, including the SDK's and httpx's own
exceptions, is raised here as a typed UpstreamError.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

from google.auth import exceptions as auth_exceptions
from google.genai import errors as genai_errors

from ..catalog import ModelSpec
from ..config import Settings
from ..errors import (
    ContextTooLong,
    UpstreamBadRequest,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from ..schemas import ChatCompletionRequest
from .base import Chunk, Completion, Timeouts
from .gemini_request import build_request
from .gemini_response import StreamTranslator, completion_from_response
from .openai_compat import retry_after
from .vertex_client import TIMEOUT_ERRORS, TRANSPORT_ERRORS, call_options, new_client
from .vertex_credentials import CREDENTIAL_SETTING, project_and_credentials
from .vertex_wif import WorkloadIdentityError

log = logging.getLogger(__name__)

_TOKEN_LIMIT_WORDING = (
    "exceeds the maximum number of tokens",
    "input token count",
    "maximum context length",
    "too many tokens",
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
            contents, config = build_request(req, call_options(timeouts.read_s, timeouts.connect_s))
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
        translator = StreamTranslator(model)
        upstream: Any = None
        try:
            contents, config = build_request(req, call_options(timeouts.stream_idle_s, timeouts.connect_s))
            upstream = await self._client.aio.models.generate_content_stream(
                model=model.upstream_model, contents=contents, config=config
            )
            async for resp in upstream:
                chunk = translator.feed(resp)
                if chunk is not None:
                    yield chunk
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
        for chunk in translator.finish():
            yield chunk

    # --- errors -----------------------------------------------------------------------------

    def _error(self, exc: BaseException, model: ModelSpec) -> UpstreamError:
        if isinstance(exc, genai_errors.APIError):
            return api_error(exc, model, project=self.project, location=self.location)
        if isinstance(exc, (*TIMEOUT_ERRORS, TimeoutError)):
            return UpstreamTimeout(f"{model.id} timed out ({type(exc).__name__}).", model=model.id)
        if isinstance(exc, TRANSPORT_ERRORS):
            where = self.base_url or f"{self.location}-aiplatform.googleapis.com"
            # the address and the transport's text are for operators; callers read model and settings
            log.warning(
                "%s: the connection to Vertex AI at %s failed: %s: %s", model.id, where, type(exc).__name__, exc
            )
            return UpstreamUnavailable(
                f"{model.id}: the connection to Vertex AI failed ({type(exc).__name__}); check VERTEX_AI_LOCATION"
                " (and VERTEX_AI_BASE_URL when set).",
                model=model.id,
            )
        if isinstance(exc, WorkloadIdentityError):  # already says which hop failed and what to fix
            return UpstreamUnavailable(f"{model.id}: {exc}", model=model.id)
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
