"""One source of truth for app settings.

A setting is needed when function_app.py binds it as `%NAME%` (the host cannot index the function
without it), when the code reads it (a field of shared.config.Settings), or when the Functions host
or worker needs it (FUNCTIONS_WORKER_RUNTIME, PYTHON_ENABLE_INIT_INDEXING, the host's storage, the
trigger's connection). Each must appear in local.settings.sample.json, the README's configuration
table, and (for what a deployment needs) the Bicep app settings.
"""

from __future__ import annotations

import pytest

from shared.config import Settings
from tests.settings_sources import (
    ALTERNATIVES,
    STORAGE_SETTINGS,
    WORKER_SETTINGS,
    bicep_app_settings,
    bound_settings,
    code_settings,
    connection_names,
    readme_table,
    sample_values,
)

# Settings the code reads that are deliberately not Bicep app settings, with the reason. Every other
# setting without a default (None: it selects a production backend or identity) must be in Bicep.
NOT_IN_BICEP = {
    "AZURE_CLIENT_SECRET": "never an app setting: with AZURE_CLIENT_ID naming the managed identity it would misdirect DefaultAzureCredential",
    "SERVICE_BUS_CONNECTION_STRING": "Service Bus is identity-based in Azure (SERVICE_BUS_NAMESPACE)",
    "GOOGLE_APPLICATION_CREDENTIALS_JSON": "workload identity federation (VERTEX_WIF_*) is the default in Azure; "
    "a JSON key only with vertexAuth=jsonKey, as a Key Vault reference",
    "VERTEX_AI_BASE_URL": "tests point the SDK at a fake; Azure uses the real endpoint",
    "WEAVIATE_GRPC_HOST": "derived from WEAVIATE_URL's host",
    "WEAVIATE_GRPC_SECURE": "derived from WEAVIATE_URL's scheme",
}


def test_the_sources_are_parsed() -> None:
    assert {"BACKUP_CHECK_SCHEDULE", "FEEDBACK_EXAMPLES_SCHEDULE", "SERVICE_BUS_QUEUE"} <= bound_settings()
    assert connection_names() == {"ServiceBusConnection"}
    assert len(code_settings()) > 50
    assert "DATABASE_URL" in bicep_app_settings()
    assert "DATABASE_URL" in readme_table()


# --- local.settings.sample.json ------------------------------------------------------------------------


def test_every_bound_setting_has_a_value_in_the_sample() -> None:
    sample = sample_values()
    missing = sorted(n for n in bound_settings() if not sample.get(n))
    assert not missing, f"bound as %SETTING% in function_app.py but empty or absent in the sample: {missing}"


def test_every_setting_the_code_reads_is_in_the_sample() -> None:
    sample = set(sample_values())
    missing = sorted(n for n in set(code_settings()) - sample if ALTERNATIVES.get(n) not in sample)
    assert not missing, f"read by shared/config.py but absent from local.settings.sample.json: {missing}"


def test_the_sample_has_what_the_host_and_worker_need() -> None:
    sample = sample_values()
    for name, value in WORKER_SETTINGS.items():
        assert sample.get(name) == value, name
    assert any(sample.get(n) for n in STORAGE_SETTINGS)
    for conn in connection_names():
        # an empty connection breaks the Service Bus listener under Core Tools
        assert conn not in sample or sample[conn], conn
        assert sample.get(conn) or sample.get(f"{conn}__fullyQualifiedNamespace"), conn


def test_the_sample_is_valid_for_the_code(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every value parses (an empty value means unset)."""
    for name, value in sample_values().items():
        monkeypatch.setenv(name, value)
    s = Settings()
    assert s.service_bus_connection_string is None  # "" is unset, not an empty connection string
    assert s.feedback_examples_schedule == sample_values()["FEEDBACK_EXAMPLES_SCHEDULE"]


# --- README --------------------------------------------------------------------------------------------


def test_every_setting_is_in_the_readme_table() -> None:
    documented = readme_table()
    needed = set(code_settings()) | bound_settings() | set(WORKER_SETTINGS) | set(sample_values())
    missing = sorted(n for n in needed - documented if ALTERNATIVES.get(n) not in documented)
    assert not missing, f"not in README.md's configuration table: {missing}"


# --- Bicep -----------------------------------------------------------------------------------------------


def test_every_bound_setting_is_a_bicep_app_setting() -> None:
    bicep = bicep_app_settings()
    missing = sorted(bound_settings() - set(bicep))
    assert not missing, f"bound as %SETTING% but not in the Bicep app settings (the host cannot index): {missing}"
    for conn in connection_names():
        assert conn in bicep or f"{conn}__fullyQualifiedNamespace" in bicep, conn


def test_the_bicep_app_settings_have_what_the_worker_needs() -> None:
    bicep = bicep_app_settings()
    wrong = {n: bicep.get(n, "<absent>") for n, v in WORKER_SETTINGS.items() if bicep.get(n) != v}
    assert not wrong, f"Bicep app settings the worker needs, with the wrong value or absent: {wrong}"
    assert any(n in bicep for n in STORAGE_SETTINGS)


def test_every_production_setting_the_code_reads_is_a_bicep_app_setting() -> None:
    bicep = bicep_app_settings()
    unset_by_default = {n for n, default in code_settings().items() if default is None}
    missing = sorted(n for n in unset_by_default - set(bicep) - set(NOT_IN_BICEP) if ALTERNATIVES.get(n) not in bicep)
    assert not missing, f"no default and not in the Bicep app settings: {missing}"
    stale = sorted(n for n in NOT_IN_BICEP if n not in code_settings())
    assert not stale, f"exemptions for settings the code no longer reads: {stale}"
