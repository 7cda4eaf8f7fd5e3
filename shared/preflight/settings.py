"""The settings alone: problems readiness would report (shared/config_checks.py), named here before
a revision takes traffic."""

from __future__ import annotations

from ..config_checks import config_problems
from .base import CheckResult, Environment, failed, passed

NAME = "settings"


class SettingsCheck:
    name = NAME
    timeout_fix = "check the app settings"

    async def run(self, env: Environment) -> CheckResult:
        problems = config_problems(env.settings)
        if problems:
            return failed(NAME, "; ".join(problems), "make the named settings agree (docs/deploy.md)")
        return passed(NAME, "Service Bus sender and trigger agree; Vertex federation settings well formed")
