"""The local host behaves as the Functions host does where a caller or an operator would notice:
route constraints, methods, %SETTING% resolution without code defaults, and past-due timers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from azure.functions import TimerRequest

from devtools import localhost
from devtools.localhost import TimerRunner, resolve_setting, route_pattern


def test_route_constraints_match_as_on_the_host() -> None:
    by_int = route_pattern("/api/v1/things/{id:int}")
    assert by_int.match("/api/v1/things/42") and by_int.match("/api/v1/things/42")["id"] == "42"  # type: ignore[index]
    assert by_int.match("/api/v1/things/abc") is None
    by_guid = route_pattern("/api/v1/jobs/{id:guid}")
    assert by_guid.match("/api/v1/jobs/6f1c6a52-4a8e-4d0f-9d43-0b7f6f3e2a11")
    assert by_guid.match("/api/v1/jobs/not-a-guid") is None
    plain = route_pattern("/api/v1/jobs/{id}")
    assert plain.match("/api/v1/jobs/anything")["id"] == "anything"  # type: ignore[index]
    assert plain.match("/api/v1/jobs/a/b") is None
    optional = route_pattern("/api/v1/items/{id?}")
    assert optional.match("/api/v1/items") and optional.match("/api/v1/items/7")


def test_a_binding_setting_has_no_code_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOME_QUEUE", "from-env")
    assert resolve_setting("%SOME_QUEUE%") == "from-env"
    assert resolve_setting("literal-queue") == "literal-queue"
    # a bound setting in neither the environment nor the settings file fails, naming it
    with pytest.raises(RuntimeError, match="NOT_A_SETTING_ANYWHERE"):
        resolve_setting("%NOT_A_SETTING_ANYWHERE%")
    # one the sample file has resolves from there (what Core Tools reads locally)
    monkeypatch.delenv("FEEDBACK_EXAMPLES_SCHEDULE", raising=False)
    assert (
        resolve_setting("%FEEDBACK_EXAMPLES_SCHEDULE%") == localhost.app_settings_file()["FEEDBACK_EXAMPLES_SCHEDULE"]
    )


async def test_a_late_timer_occurrence_is_past_due() -> None:
    seen: list[bool] = []

    async def fn(timer: TimerRequest) -> None:
        seen.append(timer.past_due)
        await asyncio.sleep(1.6)  # overruns the next occurrence (every second)

    runner = TimerRunner("* * * * * *", "t", False, fn, "timer")
    task = asyncio.create_task(runner.run())
    try:
        for _ in range(100):
            if len(seen) >= 2:
                break
            await asyncio.sleep(0.1)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert len(seen) >= 2
    assert seen[1] is True  # fired after the previous run overran its slot


def test_a_function_without_methods_takes_any_method() -> None:
    import azure.functions as func

    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.route(route="anything")
    async def anything(req: Any) -> Any:
        return None

    idx = localhost.index_functions(app)
    methods = {m for route, ms, _, _ in idx.http if route == "anything" for m in ms}
    assert {"GET", "POST", "PUT", "DELETE", "PATCH"} <= methods
