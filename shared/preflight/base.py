"""What every preflight check shares: the environment it checks, its result, and the runner.

A check is one family of the pre-deployment checklist (docs/deploy.md). It runs against the same
Settings the app reads (Key Vault references resolved first) and answers with one line: pass,
fail or skip (nothing of that family is configured), and for a failure the fix. Each runs under
its own timeout; a timeout is a failure that names the check.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol
from urllib.parse import urlparse

from ..config import Settings

Status = Literal["pass", "fail", "skip"]


@dataclass(frozen=True)
class Environment:
    """What the checks look at: the app's settings, and the raw app settings (environment) for
    the names that are not Settings fields (the trigger's `ServiceBusConnection*`)."""

    settings: Settings
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    timeout_s: float = 10.0


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: Status
    verdict: str
    fix: str | None = None
    duration_ms: float = 0.0

    def line(self) -> str:
        mark = {"pass": "PASS", "fail": "FAIL", "skip": "SKIP"}[self.status]
        text = f"{mark}  {self.name}: {self.verdict}"
        if self.fix:
            text += f"  -> fix: {self.fix}"
        return text

    def as_dict(self) -> dict[str, object]:
        return {
            "check": self.name,
            "status": self.status,
            "verdict": self.verdict,
            "fix": self.fix,
            "duration_ms": round(self.duration_ms, 1),
        }


class Check(Protocol):
    name: str
    # what to do when the check does not finish within its timeout
    timeout_fix: str

    async def run(self, env: Environment) -> CheckResult: ...


def passed(name: str, verdict: str) -> CheckResult:
    return CheckResult(name, "pass", verdict)


def failed(name: str, verdict: str, fix: str) -> CheckResult:
    return CheckResult(name, "fail", verdict, fix)


def skipped(name: str, verdict: str) -> CheckResult:
    return CheckResult(name, "skip", verdict)


def is_loopback(host: str | None) -> bool:
    return host in (None, "", "localhost", "127.0.0.1", "::1") or (host or "").startswith("127.")


def host_of(url: str) -> str | None:
    return urlparse(url if "://" in url else f"//{url}").hostname


def describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__


async def run_checks(checks: Sequence[Check], env: Environment) -> list[CheckResult]:
    """Run the checks concurrently, each under env.timeout_s; results in the given order."""

    async def one(check: Check) -> CheckResult:
        t0 = time.perf_counter()
        try:
            result = await asyncio.wait_for(check.run(env), env.timeout_s)
        except TimeoutError:
            result = failed(check.name, f"no answer within {env.timeout_s:g} s", check.timeout_fix)
        except Exception as exc:
            result = failed(check.name, f"the check itself failed: {describe(exc)}", check.timeout_fix)
        ms = (time.perf_counter() - t0) * 1000
        return CheckResult(result.name, result.status, result.verdict, result.fix, ms)

    return list(await asyncio.gather(*(one(c) for c in checks)))
