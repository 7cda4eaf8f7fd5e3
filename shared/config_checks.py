"""Configuration problems found from the settings alone, before (and while) the app serves.

Readiness reports them and answers "down" (the composition root hands them to HealthChecks): a
deployment whose sender and trigger name different Service Bus namespaces, or whose Vertex AI
federation settings are malformed, must not look healthy. `python -m shared.cli preflight` runs
them too, with the checks that need the network.
"""

from __future__ import annotations

from .config import Settings
from .providers.vertex_wif import settings_problems as vertex_wif_problems
from .queue.servicebus_settings import namespace_problems


def config_problems(settings: Settings) -> list[str]:
    return [*namespace_problems(settings), *vertex_wif_problems(settings)]
