"""Typed errors. Each one carries its HTTP status and OpenAI error type; shared/api/http.py maps them.

Provider errors are normalised into the UpstreamError family so that retries, fallback and the
Service Bus trigger can decide from the type alone whether a failure is transient.
"""

from __future__ import annotations

from typing import Any

ECHO_LIMIT = 80


def shorten(value: object, limit: int = ECHO_LIMIT) -> str:
    """A caller's identifier as an error message echoes it: bounded (a 10 KB model name once came
    back whole)."""
    text = str(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


class RouterError(Exception):
    status: int = 500
    type: str = "server_error"
    code: str = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


# --- client mistakes (4xx) ------------------------------------------------------------------


class InvalidRequest(RouterError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class PayloadTooLarge(InvalidRequest):
    status = 413
    code = "payload_too_large"


class ModelNotFound(InvalidRequest):
    status = 404
    code = "model_not_found"


class ModelRetired(InvalidRequest):
    status = 410
    code = "model_retired"


class NoEligibleModel(InvalidRequest):
    """The constraints of the request leave no model that can serve it."""

    status = 422
    code = "no_eligible_model"


class NotFound(RouterError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class MethodNotAllowed(RouterError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"

    def __init__(self, message: str, allowed: list[str]) -> None:
        super().__init__(message, headers={"Allow": ", ".join(allowed)})


class AuthenticationFailed(RouterError):
    status = 401
    type = "authentication_error"
    code = "invalid_token"

    def __init__(self, message: str = "A valid bearer token is required.", **kw: Any) -> None:
        kw.setdefault("headers", {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        super().__init__(message, **kw)


class PermissionDenied(RouterError):
    status = 403
    type = "permission_error"
    code = "insufficient_role"


class QuotaExceeded(RouterError):
    status = 429
    type = "rate_limit_error"
    code = "quota_exceeded"

    def __init__(self, message: str, *, limit: str, retry_after_s: float, **kw: Any) -> None:
        headers = {"Retry-After": str(max(1, int(retry_after_s + 0.999)))}
        super().__init__(message, code=kw.pop("code", "quota_exceeded"), param=limit, headers=headers)
        self.limit = limit
        self.retry_after_s = retry_after_s


class ClientClosedRequest(RouterError):
    """The caller went away before its streamed answer ended. Never sent (nobody is there to read
    it): the request log records it, with nginx's status for the case, so that an abandoned
    stream is not counted as a complete answer."""

    status = 499
    type = "invalid_request_error"
    code = "client_closed_request"


# --- upstream failures -----------------------------------------------------------------------


class UpstreamError(RouterError):
    """A model provider failed. `reason` names the failure class used by fallback rules."""

    status = 502
    type = "upstream_error"
    code = "upstream_error"
    reason = "unavailable"
    transient = True

    def __init__(self, message: str, *, model: str | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.model = model


class UpstreamRateLimited(UpstreamError):
    status = 429
    type = "rate_limit_error"
    code = "upstream_rate_limited"
    reason = "rate_limited"

    def __init__(self, message: str, *, retry_after_s: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after_s = retry_after_s
        if retry_after_s is not None:
            self.headers.setdefault("Retry-After", str(max(1, int(retry_after_s + 0.999))))


class UpstreamUnavailable(UpstreamError):
    status = 503
    code = "upstream_unavailable"
    reason = "unavailable"


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "upstream_timeout"
    reason = "timeout"


class ContextTooLong(UpstreamError):
    status = 400
    type = "invalid_request_error"
    code = "context_length_exceeded"
    reason = "context_too_long"
    transient = False


class ContentFiltered(UpstreamError):
    status = 400
    type = "invalid_request_error"
    code = "content_filter"
    reason = "content_filtered"
    transient = False


class UpstreamBadRequest(UpstreamError):
    status = 400
    type = "invalid_request_error"
    code = "upstream_bad_request"
    reason = "bad_request"
    transient = False


class ProviderNotConfigured(RouterError):
    """No provider can be reached for a model: a deployment problem, named precisely."""

    status = 503
    type = "server_error"
    code = "provider_not_configured"


class DependencyUnavailable(RouterError):
    status = 503
    type = "server_error"
    code = "dependency_unavailable"
