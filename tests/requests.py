"""Build the request objects the Functions host hands to HTTP functions (Starlette Requests,
with the HTTP streaming extension), and the Service Bus/timer objects, for direct calls."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request


def http_request(
    method: str,
    path: str,
    body: bytes | dict[str, Any] | list[Any] | None = None,
    headers: dict[str, str] | None = None,
    query: str = "",
    path_params: dict[str, str] | None = None,
) -> Request:
    raw = body if isinstance(body, bytes) else (orjson.dumps(body) if body is not None else b"")
    hdrs = {"content-type": "application/json", "content-length": str(len(raw)), **(headers or {})}
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "headers": [(k.lower().encode(), v.encode()) for k, v in hdrs.items()],
        "path_params": path_params or {},
        "client": ("127.0.0.1", 12345),
        "server": ("127.0.0.1", 7071),
        "scheme": "http",
    }
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": raw, "more_body": False}

    return Request(scope, receive)


def user_function(name: str) -> Any:
    """The undecorated function behind a decorated one in function_app.py."""
    import function_app

    return getattr(function_app, name).build().get_user_function()
