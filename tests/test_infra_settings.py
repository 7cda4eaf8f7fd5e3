"""Every setting the code reads reaches the app in both deployment modes.

Both parameter files are rendered through infra/main.bicep's parameters (scripts/bicep_lint.py
evaluates the template's vars with the file's values and the defaults of the rest; values only
Azure knows at deployment time stay opaque). The rendered app settings are then checked against
`Settings` (shared/config.py) field by field, by the names the environment uses: each is set,
or covered by one of a set of alternatives, or listed below as optional with its reason.
Finally the rendered settings are loaded as the platform would and must validate, with no
configuration problem (one Service Bus namespace, well-formed Vertex federation settings).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.config import Settings
from shared.config_checks import config_problems
from tests.settings_sources import PARAMETER_FILES, bicep_lint, parameters, render_app_settings

ROOT = Path(__file__).resolve().parent.parent
MAIN = ROOT / "infra" / "main.bicep"

lint = bicep_lint

# Settings the template leaves to the code's default, and why. Grouped by reason.
_REASONS: dict[str, list[str]] = {
    "tuning with a measured or documented default in shared/config.py; override per deployment when needed": [
        "LOG_LEVEL",
        "DEFAULT_POLICY",
        "ROUTING_K",
        "ROUTING_PRIOR_STRENGTH",
        "ROUTING_SIMILARITY_POWER",
        "COST_QUALITY_MARGIN",
        "BALANCED_COST_WEIGHT",
        "BALANCED_UPGRADE_CONFIDENCE",
        "TENANT_PRIOR_REFRESH_S",
        "TENANT_SPACE_EXAMPLES",
        "TENANT_SPACES_MB",
        "MAX_BODY_BYTES",
        "MAX_MESSAGES",
        "MAX_TOTAL_CHARS",
        "REQUEST_DEADLINE_S",
        "UPSTREAM_CONNECT_TIMEOUT_S",
        "UPSTREAM_READ_TIMEOUT_S",
        "STREAM_IDLE_TIMEOUT_S",
        "MAX_ATTEMPTS_PER_MODEL",
        "MAX_FALLBACKS",
        "FALLBACK_ON",
        "DB_POOL_MAX",
        "LOG_BUFFER_MAX",
        "LOG_BATCH_SIZE",
        "LOG_BACKLOG_READY_MAX",
        "DEAD_LETTERS_READY_MAX",
        "LOG_FLUSH_INTERVAL_S",
        "CACHE_TTL_S",
        "SEMANTIC_CACHE_THRESHOLD",
        "EMBEDDING_CACHE_TTL_S",
        "CACHE_MAX_BYTES",
        "WEAVIATE_TIMEOUT_S",
        "WEAVIATE_INSERT_TIMEOUT_S",
        "FEEDBACK_PROMPT_TTL_S",
        "FEEDBACK_PROMPT_MAX_BYTES",
        "QUOTA_REQUESTS_PER_MINUTE",
        "QUOTA_TOKENS_PER_DAY",
        "QUOTA_USD_PER_MONTH",
        "SERVICE_BUS_MAX_DELIVERY_COUNT",
        "MAX_JOB_MESSAGE_BYTES",
        "VERTEX_WIF_TOKEN_LIFETIME_S",
    ],
    "feature switches whose default is the production behaviour (docs/operations.md, docs/weaviate.md)": [
        "LOG_PROMPTS",
        "DATABASE_ENABLED",
        "CACHE_ENABLED",
        "CACHE_NONDETERMINISTIC",
        "SEMANTIC_CACHE_ENABLED",
        "SEMANTIC_CACHE_TENANTS",
        "WEAVIATE_SEED_EXAMPLES",
        "FEEDBACK_TO_EXAMPLES",
        "STORE_PROMPT_TEXT",
        "STORE_PROMPT_TEXT_TENANTS",
        "BACKUP_CHECK_RUN_ON_STARTUP",
        "AUTH_ENABLED",
        "METRICS_PUBLIC",
        "TENANT_MODEL_ALLOWLIST",
    ],
    "files inside the image, found relative to the package": [
        "MODEL_CATALOG_PATH",
        "EXAMPLES_PATH",
        "ENCODER_STATE_PATH",
    ],
    "the encoder is the bundled tfidf-svd by default; the vertex encoder's knobs matter only with ENCODER=vertex": [
        "ENCODER",
        "ENCODER_DIM",
        "VERTEX_EMBEDDING_MODEL",
        "VERTEX_EMBEDDING_DIM",
    ],
    "the names the app and the guide share; defaults are the guide's (collection LLMDocument, issuer/audience llm-router)": [
        "WEAVIATE_COLLECTION",
        "JWT_ISSUER",
        "JWT_AUDIENCE",
        "AZURE_AUTHORITY_HOST",
    ],
    "local development and tests only (embedded servers, fake endpoints)": [
        "PORT",
        "EMBEDDED_DATA_DIR",
        "VERTEX_AI_BASE_URL",
        "VERTEX_WIF_STS_URL",
        "VERTEX_WIF_IAM_URL",
    ],
    "self-labelling from traffic is off by default (SHADOW_SAMPLE_RATE=0); the budget, judge and concurrency "
    "defaults are documented (docs/routing-quality.md)": [
        "SHADOW_SAMPLE_RATE",
        "SHADOW_USD_PER_DAY",
        "SHADOW_JUDGE_MODEL",
        "SHADOW_MAX_IN_FLIGHT",
    ],
    "deliberately not an app setting: with AZURE_CLIENT_ID naming the managed identity it would make "
    "DefaultAzureCredential try a client-secret login (infra/main.bicep notes)": ["AZURE_CLIENT_SECRET"],
}
OPTIONAL = {name: reason for reason, names in _REASONS.items() for name in names}

# One of each group must be set, and which one depends on the mode's parameters.
ALTERNATIVES: dict[str, list[set[str]]] = {
    "Vertex AI credentials": [
        {"VERTEX_WIF_PROVIDER", "VERTEX_WIF_SERVICE_ACCOUNT", "VERTEX_WIF_ENTRA_AUDIENCE"},
        {"GOOGLE_APPLICATION_CREDENTIALS_JSON"},
    ],
    "Service Bus trigger": [{"ServiceBusConnection__fullyQualifiedNamespace"}, {"ServiceBusConnection"}],
    "Service Bus for the app's start-up": [{"SERVICE_BUS_NAMESPACE"}, {"SERVICE_BUS_CONNECTION_STRING"}],
    "Weaviate gRPC host (empty: the REST host)": [{"WEAVIATE_GRPC_HOST"}, set()],
    "Weaviate gRPC TLS (empty: like REST)": [{"WEAVIATE_GRPC_SECURE"}, set()],
}
# App settings the Functions host or the platform reads, not the app's Settings.
HOST_SETTINGS = {
    "FUNCTIONS_EXTENSION_VERSION",
    "FUNCTIONS_WORKER_RUNTIME",
    "PYTHON_ENABLE_INIT_INDEXING",
    "PROMETHEUS_MULTIPROC_DIR",
    "WEBSITES_PORT",
    "WEBSITES_ENABLE_APP_SERVICE_STORAGE",
    "AzureWebJobsStorage__accountName",
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__clientId",
    "AzureFunctionsJobHost__extensions__http__maxConcurrentRequests",
    "ServiceBusConnection__credential",
    "ServiceBusConnection__clientId",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
}


def env_name(field: str) -> str:
    alias = Settings.model_fields[field].validation_alias
    return alias if isinstance(alias, str) else field.upper()


SETTING_NAMES = {env_name(f) for f in Settings.model_fields}


render = render_app_settings


@pytest.mark.parametrize("mode", sorted(PARAMETER_FILES))
def test_parameter_file_sets_only_declared_parameters_and_every_required_one(mode: str) -> None:
    decls, _ = lint.parse(MAIN.read_text(encoding="utf-8"))
    declared = {d.name: d for d in decls if d.keyword == "param"}
    given = parameters(mode)
    assert not set(given) - set(declared), sorted(set(given) - set(declared))
    required = {name for name, d in declared.items() if d.value is None}
    assert required <= set(given), sorted(required - set(given))
    assert given["deploymentMode"] == mode


@pytest.mark.parametrize("mode", sorted(PARAMETER_FILES))
def test_every_setting_the_code_reads_is_set_or_optional_for_a_reason(mode: str) -> None:
    rendered = render(mode)
    covered = set(OPTIONAL)
    for group, options in ALTERNATIVES.items():
        present = [opt for opt in options if opt and opt <= set(rendered)]
        if not present:
            assert set() in options, f"{mode}: none of {group} is set ({options})"
        covered |= set().union(*options)
    missing = sorted(SETTING_NAMES - set(rendered) - covered)
    assert not missing, f"{mode}: settings the code reads but the template does not set: {missing}"
    unknown = sorted(set(rendered) - SETTING_NAMES - HOST_SETTINGS)
    assert not unknown, f"{mode}: app settings nothing reads (a typo?): {unknown}"
    stale = sorted(set(OPTIONAL) - SETTING_NAMES)
    assert not stale, f"listed as optional but not a setting any more: {stale}"
    both = sorted(set(OPTIONAL) & set(rendered))
    assert not both, f"{mode}: listed as optional but set by the template (drop it from OPTIONAL): {both}"


def test_the_modes_differ_where_they_should() -> None:
    new, existing = render("new"), render("existing")
    # one namespace: the trigger's setting and the app's come from the same template value
    assert new["ServiceBusConnection__fullyQualifiedNamespace"] == new["SERVICE_BUS_NAMESPACE"]
    assert "ServiceBusConnection" not in new
    assert existing["ServiceBusConnection"] == existing["SERVICE_BUS_CONNECTION_STRING"]
    assert "llm-router-service-bus-connection-string" in str(existing["ServiceBusConnection"])
    assert "ServiceBusConnection__fullyQualifiedNamespace" not in existing
    # the guide's secret names, as they are
    for rendered in (new, existing):
        assert "secrets/WEAVIATE-URL/)" in str(rendered["WEAVIATE_URL"])
        assert "secrets/WEAVIATE-API-KEY/)" in str(rendered["WEAVIATE_API_KEY"])
        assert rendered["PYTHON_ENABLE_INIT_INDEXING"] == "1"
        assert rendered["FUNCTIONS_WORKER_RUNTIME"] == "python"
        assert rendered["PROMETHEUS_MULTIPROC_DIR"] == "/tmp/prometheus-multiproc"
        assert "GOOGLE_APPLICATION_CREDENTIALS_JSON" not in rendered, "workload identity is the default"
    assert new["VERTEX_AI_LOCATION"] == "us-central1"
    assert existing["VERTEX_AI_LOCATION"] == "us-east1"
    assert (existing["WEAVIATE_GRPC_HOST"], existing["WEAVIATE_GRPC_PORT"], existing["WEAVIATE_GRPC_SECURE"]) == (
        "weaviate-grpc.example.com",
        "443",
        "true",
    )
    json_key = lint.Renderer(MAIN.read_text(encoding="utf-8"), {**parameters("new"), "vertexAuth": "jsonKey"})
    names = {s["name"] for s in json_key.value("appSettings")}
    assert "GOOGLE_APPLICATION_CREDENTIALS_JSON" in names and "VERTEX_WIF_PROVIDER" not in names


@pytest.mark.parametrize("mode", sorted(PARAMETER_FILES))
def test_rendered_settings_load_and_agree(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SETTING_NAMES | HOST_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    for name, value in render(mode).items():
        # what the platform hands the app: Key Vault references resolved; other deployment-time
        # values (identity client id, storage name) as opaque text
        text = str(value)
        if "@Microsoft.KeyVault(" in text and "servicebus" in text.lower():
            text = "Endpoint=sb://sb-llm-router.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=x"
        monkeypatch.setenv(name, text)
    settings = Settings()
    assert settings.is_production
    assert settings.functions_worker_process_count == 2
    assert config_problems(settings) == []
