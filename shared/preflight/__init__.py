"""`python -m shared.cli preflight`: the pre-deployment checklist (docs/deploy.md), automated.

Each family of checks is a module here (base.py has the protocol and the runner). Run against the
configured environment, i.e. the same Settings the app reads, with Key Vault secrets loaded and
`@Microsoft.KeyVault(...)` references checked, it prints one line per check (pass / fail / skip,
and the fix for a failure) and exits non-zero when any check fails; `--json` for pipelines.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from ..config import Settings
from ..keyvault import load_secrets
from .auth import AuthCheck
from .base import Check, CheckResult, Environment, describe, failed, run_checks
from .keyvault import KeyVaultCheck
from .postgres import PostgresCheck
from .redis import RedisCheck
from .servicebus import ServiceBusCheck, ServiceBusTriggerCheck
from .settings import SettingsCheck
from .vertex import VertexCheck
from .weaviate import WeaviateCheck


def all_checks() -> list[Check]:
    return [
        KeyVaultCheck(),
        SettingsCheck(),
        AuthCheck(),
        PostgresCheck(),
        RedisCheck(),
        ServiceBusCheck(),
        ServiceBusTriggerCheck(),
        WeaviateCheck(),
        VertexCheck(),
    ]


async def preflight(
    settings: Settings,
    environ: Mapping[str, str] | None = None,
    timeout_s: float = 10.0,
    checks: Sequence[Check] | None = None,
    vault_credential: Any = None,
    **vault_client_kwargs: Any,
) -> list[CheckResult]:
    """Load Key Vault secrets into the settings (as the app does at start), then run the checks.
    `vault_credential` / `vault_client_kwargs` go to the Key Vault client (default: the app's
    DefaultAzureCredential)."""

    try:
        settings = await asyncio.wait_for(load_secrets(settings, vault_credential, **vault_client_kwargs), timeout_s)
    except Exception as exc:
        return [
            failed(
                "keyvault",
                f"cannot read secrets from {settings.key_vault_url}: {describe(exc)}",
                KeyVaultCheck.timeout_fix,
            )
        ]
    env = Environment(settings, dict(os.environ if environ is None else environ), timeout_s)
    return await run_checks(checks if checks is not None else all_checks(), env)


def report(results: Sequence[CheckResult], as_json: bool, out: TextIO) -> int:
    failures = [r for r in results if r.status == "fail"]
    if as_json:
        out.write(json.dumps({"ok": not failures, "checks": [r.as_dict() for r in results]}, indent=2) + "\n")
    else:
        for r in results:
            out.write(r.line() + "\n")
        out.write(f"preflight: {'FAILED' if failures else 'ok'} ({len(failures)} of {len(results)} checks failed)\n")
    return 1 if failures else 0


def main(settings: Settings, *, as_json: bool = False, timeout_s: float = 10.0, out: TextIO | None = None) -> int:
    results = asyncio.run(preflight(settings, timeout_s=timeout_s))
    return report(results, as_json, out or sys.stdout)


__all__ = ["Check", "CheckResult", "Environment", "all_checks", "main", "preflight", "report"]
