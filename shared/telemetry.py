"""Logging (structured JSON on the console) and tracing setup."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

from .config import Settings

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
    try:
        from opentelemetry import trace
    except ImportError:
        return {}
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return {}
    return {"trace_id": format(ctx.trace_id, "032x"), "span_id": format(ctx.span_id, "016x")}


def configure_logging(settings: Settings) -> None:
    root = logging.getLogger()
    if any(getattr(h, "_llm_router", False) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler._llm_router = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    for noisy in ("httpx", "httpcore", "azure", "urllib3", "google_genai", "grpc"):
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
    from azure.monitor.opentelemetry import configure_azure_monitor

    configure_azure_monitor(connection_string=conn.get_secret_value(), logger_name="shared")
    return "azure-monitor"


def tracer() -> Any:
    from opentelemetry import trace

    return trace.get_tracer(TRACER_NAME)
