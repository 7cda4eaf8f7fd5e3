"""Where app settings are named, read as text: the bindings in function_app.py, the Settings
fields, what the Functions host and worker need, local.settings.sample.json, the Bicep app
settings and the README's configuration table. Used by tests/test_app_settings.py and the worker
conformance tests; parsing only, no project code is imported except shared.config."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

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

    return {name.upper(): field.default for name, field in Settings.model_fields.items()}


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


_APP_SETTING = re.compile(r"name:\s*'([A-Za-z0-9_]+)'\s*\n\s*value:\s*(.+)")


def bicep_app_settings() -> dict[str, str | None]:
    """name -> literal value ('...' in Bicep) or None for an expression, from every `appSettings`
    array in infra/main.bicep and infra/modules/*.bicep."""
    out: dict[str, str | None] = {}
    for path in [INFRA / "main.bicep", *sorted((INFRA / "modules").glob("*.bicep"))]:
        text = path.read_text()
        for m in re.finditer(r"appSettings\w*\s*=\s*(?:concat\()?\[", text):
            depth, i = 0, m.end() - 1
            while i < len(text):
                depth += {"[": 1, "]": -1}.get(text[i], 0)
                if depth == 0:
                    break
                i += 1
            for name, value in _APP_SETTING.findall(text[m.end() : i]):
                value = value.strip()
                literal = re.fullmatch(r"'([^']*)'", value)
                out[name] = literal.group(1) if literal else None
    return out
