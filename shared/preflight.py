"""Configuration problems found from the settings alone, before (and while) the app serves.

Readiness (shared/health.py) reports them and answers "down": a deployment whose sender and trigger
name different Service Bus namespaces, or whose Vertex AI federation settings are malformed, must not
look healthy. `python -m shared.preflight` prints them and exits 1 when there are any, so a pipeline
can run it against the app settings before it swaps a revision in.
"""

from __future__ import annotations

import sys

from .config import Settings, get_settings
from .providers.vertex_wif import settings_problems as vertex_wif_problems
from .queue.servicebus import namespace_problems


def config_problems(settings: Settings) -> list[str]:
    return [*namespace_problems(settings), *vertex_wif_problems(settings)]


def main() -> int:
    problems = config_problems(get_settings())
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"preflight: {len(problems)} problem(s)" if problems else "preflight: configuration consistent")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
