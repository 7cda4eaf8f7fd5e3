"""function_app.py on Microsoft's Python worker (4.34.0), driven over gRPC as the Functions host
drives it (tests/worker/host.py). What the worker sees and answers is asserted; nothing of ours is
replaced. The scenarios sharing one set of app settings share one worker process (module fixture
`worker`); the ones that need other settings start their own.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import pytest

from tests.settings_sources import bicep_app_settings
from tests.worker.conftest import GATE_WORD, GatedUpstream, light_settings, local_catalog
from tests.worker.host import HostError, WorkerHost

# The public contract of the app: every function, its trigger, and for HTTP its route and methods.
HTTP_FUNCTIONS: dict[str, tuple[str, list[str]]] = {
    "chat_completions": ("api/v1/chat/completions", ["POST"]),
    "route_decision": ("api/v1/route", ["POST"]),
    "list_models": ("api/v1/models", ["GET"]),
    "health_detail": ("api/v1/health", ["GET"]),
    "health_live": ("health/live", ["GET"]),
    "health_ready": ("health/ready", ["GET"]),
    "prometheus_metrics": ("metrics", ["GET"]),
    "openapi_document": ("api/v1/openapi.json", ["GET"]),
    "usage_report": ("api/v1/usage", ["GET"]),
    "post_feedback": ("api/v1/feedback", ["POST"]),
    "submit_job": ("api/v1/jobs", ["POST"]),
    "get_job": ("api/v1/jobs/{id}", ["GET"]),
    "routing_examples": ("api/v1/examples", ["GET", "POST"]),
    "judge_agreement": ("api/v1/judge/agreement", ["GET"]),
}
TIMERS = {"backup_check": "%BACKUP_CHECK_SCHEDULE%", "feedback_to_examples": "%FEEDBACK_EXAMPLES_SCHEDULE%"}
SERVICE_BUS = {"route_job_message": ("%SERVICE_BUS_QUEUE%", "ServiceBusConnection")}

ERROR_KEYS = {"message", "type", "param", "code"}


def assert_openai_error(body: bytes, status: int, expected_status: int) -> dict[str, object]:
    assert status == expected_status, body
    data = json.loads(body)
    assert set(data) == {"error"}, data
    assert set(data["error"]) == ERROR_KEYS, data
    assert isinstance(data["error"]["message"], str) and data["error"]["message"]
    return dict(data["error"])


# --- the handshake and the index ---------------------------------------------------------------------


def test_init_advertises_http_uri_with_the_app_settings(worker: WorkerHost) -> None:
    assert worker.http_uri is not None
    assert worker.http_uri.startswith("http://127.0.0.1:")
    assert "PYTHON_ENABLE_INIT_INDEXING" in worker.app_settings


def test_every_function_is_indexed_with_its_trigger_route_methods_and_bindings(worker: WorkerHost) -> None:
    functions = worker.functions
    assert set(functions) == set(HTTP_FUNCTIONS) | set(TIMERS) | set(SERVICE_BUS)
    assert len(functions) == len(HTTP_FUNCTIONS) + len(TIMERS) + len(SERVICE_BUS)
    for name, (route, methods) in HTTP_FUNCTIONS.items():
        bindings = {b["name"]: b for b in functions[name].raw_bindings}
        trigger = bindings["req"]
        assert trigger["type"] == "httpTrigger" and trigger["direction"] == "IN", name
        assert trigger["route"] == route, name
        assert sorted(trigger["methods"]) == sorted(methods), name
        assert trigger["authLevel"] == "ANONYMOUS", name
        assert bindings["$return"]["type"] == "http" and bindings["$return"]["direction"] == "OUT", name
    for name, schedule in TIMERS.items():
        (binding,) = functions[name].raw_bindings
        assert binding["type"] == "timerTrigger" and binding["schedule"] == schedule, name
        assert binding["runOnStartup"] is False, name
    for name, (queue, connection) in SERVICE_BUS.items():
        (binding,) = functions[name].raw_bindings
        assert binding["type"] == "serviceBusTrigger", name
        assert binding["queueName"] == queue and binding["connection"] == connection, name


def test_every_http_function_is_served_as_an_http_stream_function(worker: WorkerHost) -> None:
    """HTTP v2: the request reaches the function through the worker's own server (HttpUri), and
    the function's response goes back over HTTP, never as the gRPC return value."""
    for name, (route, methods) in HTTP_FUNCTIONS.items():
        path = "/" + route.replace("{id}", str(uuid.uuid4()))
        params = {"id": path.rsplit("/", 1)[-1]} if "{id}" in route else None
        body = b"{}" if methods[0] == "POST" else None
        call = worker.http(name, methods[0], path, body=body, route_params=params)
        assert worker.status(call.invocation) == "Success", (name, call.invocation.result.exception.message)
        assert not call.invocation.HasField("return_value"), name
        # the answer is our function's: a success, or our JSON error body (a 503 where this light
        # configuration has no database), never the worker's plain-text 500
        if call.status >= 400:
            assert_openai_error(call.body, call.status, call.status)


# --- HTTP through the worker's HttpUri ----------------------------------------------------------------


def test_health_live(worker: WorkerHost) -> None:
    call = worker.http("health_live", "GET", "/health/live")
    assert call.status == 200
    assert call.json() == {"status": "ok"}


def test_chat_completion_whole(worker: WorkerHost, upstream: tuple[GatedUpstream, str]) -> None:
    body = {"model": "local-small", "messages": [{"role": "user", "content": "say hello to the worker"}]}
    call = worker.http(
        "chat_completions",
        "POST",
        "/api/v1/chat/completions",
        body=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
    )
    assert call.status == 200, (call.body, [m for m in worker.log_messages() if "rror" in m or "Trace" in m][-5:])
    data = call.json()
    assert data["object"] == "chat.completion"
    assert data["choices"][0]["message"]["content"] == "Answer from small: say hello to the worker"
    assert data["usage"]["total_tokens"] > 0
    assert worker.status(call.invocation) == "Success"


def test_chat_completion_streamed_chunks_arrive_as_produced(
    worker: WorkerHost, upstream: tuple[GatedUpstream, str]
) -> None:
    """The upstream holds its second word until the client has read the first through the
    worker; a buffering path would deliver "late" instead of "second"."""
    gated, _ = upstream
    gated.gate.clear()
    body = {"model": "local-small", "stream": True, "messages": [{"role": "user", "content": f"{GATE_WORD} now"}]}
    invocation_id = worker.http_invocation("chat_completions", "POST", "/api/v1/chat/completions")
    assert worker.http_uri is not None
    contents: list[str] = []
    seen_before_gate: list[str] = []
    with (
        httpx.Client(timeout=60) as client,
        client.stream(
            "POST",
            worker.http_uri + "/api/v1/chat/completions",
            content=json.dumps(body).encode(),
            headers={"content-type": "application/json", "x-ms-invocation-id": invocation_id},
        ) as r,
    ):
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[len("data: ") :])
            for choice in chunk.get("choices", []):
                piece = choice.get("delta", {}).get("content")
                if piece:
                    contents.append(piece)
            if "first" in contents and not gated.gate.is_set():
                seen_before_gate.extend(contents)
                gated.gate.set()
    assert worker.status(worker.invocation_result(invocation_id)) == "Success"
    assert seen_before_gate == ["first"]
    assert "".join(contents) == "first second"


def test_client_mistake_gets_the_openai_error_body(worker: WorkerHost) -> None:
    call = worker.http(
        "chat_completions",
        "POST",
        "/api/v1/chat/completions",
        body=b'{"model": "auto", "messages": [',
        headers={"content-type": "application/json"},
    )
    error = assert_openai_error(call.body, call.status, 400)
    assert error["type"] == "invalid_request_error"
    assert call.headers["content-type"].startswith("application/json")


# --- triggers -------------------------------------------------------------------------------------------


def test_service_bus_message_runs_the_job_and_the_job_poll_answers_with_the_route_parameter(
    worker: WorkerHost,
) -> None:
    job_id = str(uuid.uuid4())
    body = {"model": "local-small", "messages": [{"role": "user", "content": "a queued question"}]}
    data, metadata = worker.service_bus_input(
        "msg", json.dumps(body).encode(), job_id, application_properties={"schema_version": "1"}
    )
    inv = worker.invoke("route_job_message", data, metadata)
    assert worker.status(inv) == "Success", inv.result.exception.message

    call = worker.http("get_job", "GET", f"/api/v1/jobs/{job_id}", route_params={"id": job_id})
    assert call.status == 200, call.body
    job = call.json()
    assert job["id"] == job_id
    assert job["status"] == "succeeded"
    assert job["result"]["choices"][0]["message"]["content"] == "Answer from small: a queued question"


def test_a_raised_error_in_the_service_bus_trigger_is_a_failure_so_the_message_is_redelivered(
    worker: WorkerHost, upstream: tuple[GatedUpstream, str]
) -> None:
    gated, _ = upstream
    gated.fake.always.update({"small": "500", "large": "500"})
    try:
        job_id = str(uuid.uuid4())
        body = {"model": "local-small", "messages": [{"role": "user", "content": "the upstream is down"}]}
        data, metadata = worker.service_bus_input("msg", json.dumps(body).encode(), job_id)
        inv = worker.invoke("route_job_message", data, metadata)
    finally:
        gated.fake.always.clear()
    assert worker.status(inv) == "Failure"
    assert inv.result.exception.message
    call = worker.http("get_job", "GET", f"/api/v1/jobs/{job_id}", route_params={"id": job_id})
    job = call.json()
    assert job["status"] != "succeeded"
    assert job["error"]["transient"] is True


@pytest.mark.parametrize("function", ["backup_check", "feedback_to_examples"])
def test_timers_decode_the_host_payload(worker: WorkerHost, function: str) -> None:
    before = len(worker.logs)
    inv = worker.invoke(function, worker.timer_input("timer", past_due=True))
    assert worker.status(inv) == "Success", inv.result.exception.message
    if function == "backup_check":
        # the function saw the host's IsPastDue (it warns about it)
        messages = [log.message for log in worker.logs[before:]]
        assert any("past due" in m for m in messages), messages


def test_a_malformed_host_payload_is_a_failure_not_a_silent_success(worker: WorkerHost) -> None:
    """The contract the failure test above relies on: what cannot be decoded fails the invocation."""
    inv = worker.invoke(
        "backup_check", [worker.protos.ParameterBinding(name="timer", data=worker.protos.TypedData(string="x"))]
    )
    assert worker.status(inv) == "Failure"


# --- scenarios with their own app settings -----------------------------------------------------------------


def test_an_internal_error_in_an_http_function_gets_the_openai_error_body(
    worker_dir: Path, upstream: tuple[GatedUpstream, str], tmp_path: Path
) -> None:
    """The app context cannot be built (the catalog file is broken): the caller still gets the
    JSON error body, through the worker."""
    settings = light_settings(tmp_path, local_catalog(upstream[1], tmp_path / "catalog.yaml"))
    (tmp_path / "broken.yaml").write_text("models: [ {id: x")
    settings["MODEL_CATALOG_PATH"] = str(tmp_path / "broken.yaml")
    with WorkerHost(worker_dir, settings, tmp_path / "worker.log") as host:
        assert host.status(host.init()) == "Success"
        host.index_and_load()
        call = host.http("list_models", "GET", "/api/v1/models")
        error = assert_openai_error(call.body, call.status, 500)
        assert error["type"] == "server_error"
        assert call.headers["content-type"].startswith("application/json")


def test_without_init_indexing_the_worker_advertises_no_http_uri(worker_dir: Path, tmp_path: Path) -> None:
    """Why PYTHON_ENABLE_INIT_INDEXING=1 is an app setting: without it the worker indexes later
    and never starts its HTTP server, so the host has nowhere to send an HTTP v2 request and every
    HTTP function waits forever (newer 4.x workers refuse to start instead)."""
    settings = light_settings(tmp_path, tmp_path / "unused.yaml")
    settings.pop("PYTHON_ENABLE_INIT_INDEXING", None)
    with WorkerHost(worker_dir, settings, tmp_path / "worker.log") as host:
        init = host.init()
        assert host.status(init) == "Success"
        assert "HttpUri" not in init.capabilities
        with pytest.raises(HostError, match="no HttpUri"):
            host.http("health_live", "GET", "/health/live")


def test_with_the_bicep_app_settings_the_worker_advertises_http_uri(worker_dir: Path, tmp_path: Path) -> None:
    """The worker started with what Azure gives it: the literal Bicep app settings for the host
    and the worker (FUNCTIONS_*, PYTHON_*, AzureWebJobs*), not the sample's."""
    settings = light_settings(tmp_path, tmp_path / "unused.yaml")
    for name in list(settings):
        if name.startswith(("FUNCTIONS_", "PYTHON_", "AzureWebJobs")):
            del settings[name]
    bicep = bicep_app_settings()
    settings.update(
        {n: v for n, v in bicep.items() if v is not None and n.startswith(("FUNCTIONS_", "PYTHON_", "AzureWebJobs"))}
    )
    with WorkerHost(worker_dir, settings, tmp_path / "worker.log") as host:
        init = host.init()
        assert host.status(init) == "Success"
        assert "HttpUri" in init.capabilities, (
            f"Bicep gives the worker: { {n: v for n, v in settings.items() if n.startswith('PYTHON_')} }"
        )
        host.index_and_load()
        assert host.http("health_live", "GET", "/health/live").status == 200
