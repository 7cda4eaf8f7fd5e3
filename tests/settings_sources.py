"""Where app settings are named, read as text: the bindings in function_app.py, the Settings
fields, what the Functions host and worker need, local.settings.sample.json, the Bicep app
settings and the README's configuration table. Used by tests/test_app_settings.py and the worker
conformance tests; parsing only, no project code is imported except shared.config."""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FUNCTION_APP = ROOT / "function_app.py"
SAMPLE = ROOT / "local.settings.sample.json"
README = ROOT / "README.md"
INFRA = ROOT / "infra"

SETTING_REF = re.compile(r"^%([A-Za-z0-9_]+)%$")

# What the Functions host and the Python worker need, whatever the code reads. Values are the ones
# that work: PYTHON_ENABLE_INIT_INDEXING=1 makes worker 4.34 serve HTTP streams (tests/worker).
WORKER_SETTINGS: dict[str, str | None] = {
    "FUNCTIONS_WORKER_RUNTIME": "python",
    "PYTHON_ENABLE_INIT_INDEXING": "1",
}
# The host's storage (leases for timers, keys): a connection string locally, identity in Azure.
STORAGE_SETTINGS = ("AzureWebJobsStorage", "AzureWebJobsStorage__accountName")


def bound_settings() -> set[str]:
    """`%NAME%` in the keyword arguments of function_app.py's decorators."""
    tree = ast.parse(FUNCTION_APP.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for dec in node.decorator_list:
                if isinstance(dec, ast.Call):
                    for kw in dec.keywords:
                        if isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str):
                            m = SETTING_REF.match(kw.value.value)
                            if m:
                                names.add(m.group(1))
    return names


def connection_names() -> set[str]:
    """`connection="X"` of the triggers: X, or X__fullyQualifiedNamespace (identity), must be set."""
    tree = ast.parse(FUNCTION_APP.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            for kw in node.keywords:
                if kw.arg == "connection" and isinstance(kw.value, ast.Constant):
                    names.add(str(kw.value.value))
    return names


def code_settings() -> dict[str, object]:
    """Every setting the code reads (shared/config.py), by its environment name -> default."""
    from shared.config import Settings

    out: dict[str, object] = {}
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        out[alias if isinstance(alias, str) else name.upper()] = field.default
    return out


# a setting and the alternative that stands for it (the Functions host's identity-based connection)
ALTERNATIVES = {"ServiceBusConnection": "ServiceBusConnection__fullyQualifiedNamespace"}


def sample_values() -> dict[str, str]:
    return {str(k): str(v) for k, v in json.loads(SAMPLE.read_text())["Values"].items()}


def readme_table() -> set[str]:
    """Backticked names in the first column of the README's `## Configuration` tables."""
    text = README.read_text()
    start = text.index("## Configuration")
    end = text.find("\n## ", start + 1)
    section = text[start : end if end != -1 else None]
    names: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            first = line.split("|")[1]
            names.update(re.findall(r"`([A-Za-z0-9_]+)`", first))
    return names


def bicep_app_settings(mode: str = "new") -> dict[str, str | None]:
    """name -> value (None where only Azure knows it at deployment) of the app settings
    infra/main.bicep renders for a parameter file (scripts/bicep_lint.py evaluates the template)."""
    return {k: v if isinstance(v, str) else None for k, v in render_app_settings(mode).items()}


INFRA_MAIN = INFRA / "main.bicep"
PARAMETER_FILES = {"new": INFRA / "main.parameters.json", "existing": INFRA / "existing.parameters.json"}
_lint_spec = importlib.util.spec_from_file_location("bicep_lint", INFRA.parent / "scripts" / "bicep_lint.py")
assert _lint_spec and _lint_spec.loader
bicep_lint = importlib.util.module_from_spec(_lint_spec)
sys.modules.setdefault("bicep_lint", bicep_lint)
_lint_spec.loader.exec_module(bicep_lint)


def parameters(mode: str) -> dict[str, Any]:
    data = json.loads(PARAMETER_FILES[mode].read_text(encoding="utf-8"))
    return {name: spec["value"] for name, spec in data["parameters"].items()}


def render_app_settings(mode: str) -> dict[str, Any]:
    settings = bicep_lint.Renderer(INFRA_MAIN.read_text(encoding="utf-8"), parameters(mode)).value("appSettings")
    names = [s["name"] for s in settings]
    assert len(names) == len(set(names)), f"{mode}: an app setting is set twice: {names}"
    return {s["name"]: s["value"] for s in settings}
