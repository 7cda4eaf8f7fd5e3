"""One typed settings object, read once from the environment (or Key Vault, see keyvault.py).

Every setting the app reads is a field here; nothing else in the package touches os.environ
for configuration. Field names match the app-setting names of the deployment guide
(pydantic-settings matches them case-insensitively).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_DIR = PACKAGE_DIR.parent

Policy = Literal["quality", "cost", "balanced", "latency"]


# how local.settings.sample.json marks a value the operator must fill in
SAMPLE_PLACEHOLDER = "<your-"


class Settings(BaseSettings):
    # An app setting present but empty ("" in local.settings.sample.json, or a blank value in the
    # portal) means unset: the default applies. Without this, SERVICE_BUS_CONNECTION_STRING=""
    # selected Service Bus with an empty connection string, and "" failed int/bool fields.
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True, env_ignore_empty=True)

    # --- runtime -------------------------------------------------------------------------
    environment: Literal["development", "test", "production"] = "development"
    log_level: str = "INFO"
    log_prompts: bool = False
    port: int = 7071

    # --- catalog and routing -----------------------------------------------------------------
    model_catalog_path: Path = PACKAGE_DIR / "catalog.yaml"
    examples_path: Path = PACKAGE_DIR / "data" / "starter_examples.csv.gz"
    default_policy: Policy = "balanced"
    routing_k: int = 200
    routing_prior_strength: float = 20.0
    routing_similarity_power: float = 2.0
    # Calibrated quality margin for the `cost` and `latency` policies: the cheapest/fastest
    # model whose predicted quality is within this margin of the best is chosen. Produced by
    # `python -m shared.cli calibrate` (see docs/routing-quality.md).
    cost_quality_margin: float = 0.109
    # `balanced` trades one unit of predicted quality against this many log10-dollars of cost.
    balanced_cost_weight: float = 0.05
    # `balanced` pays for a dearer model only where its predicted gain over the cheapest clears
    # its cost at this one-sided confidence (0.5: on the point estimate alone); measured in
    # docs/routing-quality.md, "Paying for an upgrade".
    balanced_upgrade_confidence: float = Field(default=0.975, ge=0.5, lt=1.0)
    # A tenant with labels of its own (feedback, the judge, imports) gets a prior fitted on them,
    # refitted in the background this often while it routes; 0 turns it off
    # (routing/tenant_prior.py, docs/routing-quality.md "A tenant's own prior").
    tenant_prior_refresh_s: float = Field(default=300.0, ge=0.0)
    # With its prior, a tenant of 240 distinct prompts or more may get a vector space of its own,
    # an encoder fitted on its prompts, where leave-one-out shows its neighbours are better found
    # there; at most this many of its examples are held in it (~0.5 KB each, read from Weaviate
    # in pages past its QUERY_MAXIMUM_RESULTS); 0 turns it off (routing/tenant_space.py,
    # docs/routing-quality.md "A tenant's own space").
    tenant_space_examples: int = Field(default=20_000, ge=0, le=100_000)
    # the memory all tenants' spaces may hold together, per process (least recently used go first)
    tenant_spaces_mb: int = Field(default=256, ge=0)
    encoder: Literal["tfidf-svd", "hashing", "vertex"] = "tfidf-svd"
    encoder_state_path: Path = PACKAGE_DIR / "data" / "encoder_tfidf_svd.npz"
    encoder_dim: int = 1024  # the `hashing` encoder's size (tfidf-svd's comes from its state)
    vertex_embedding_model: str = "text-embedding-005"
    # text-embedding-005 gives up to 768 values; fewer cost little quality and keep the index small
    vertex_embedding_dim: int = Field(default=256, ge=1, le=3072)

    # --- request limits -----------------------------------------------------------------------
    max_body_bytes: int = 1_048_576
    max_messages: int = 256
    max_total_chars: int = 400_000
    # The per-request deadline for everything upstream (retries and fallbacks included); well
    # under the ~230 s the Azure front end allows an HTTP response.
    request_deadline_s: float = 120.0
    upstream_connect_timeout_s: float = 5.0
    upstream_read_timeout_s: float = 60.0
    stream_idle_timeout_s: float = 30.0
    max_attempts_per_model: int = 2
    max_fallbacks: int = 2
    fallback_on: str = "rate_limited,unavailable,timeout,context_too_long,content_filtered"

    # --- storage ----------------------------------------------------------------------------------
    database_url: SecretStr | None = None
    embedded_data_dir: Path = PROJECT_DIR / ".data"
    database_enabled: bool = True
    db_pool_max: int = 10
    log_buffer_max: int = 100_000
    log_batch_size: int = 500
    log_flush_interval_s: float = 0.25
    # readiness says degraded past these: rows waiting to be written, and rows the database refused
    # (moved to dead_letters) in the last 24 hours
    log_backlog_ready_max: int = Field(default=10_000, ge=0)
    dead_letters_ready_max: int = Field(default=0, ge=0)

    redis_url: SecretStr | None = None
    cache_enabled: bool = True
    cache_ttl_s: int = 3600
    cache_nondeterministic: bool = False
    semantic_cache_enabled: bool = False
    semantic_cache_threshold: float = 0.95
    # Tenants whose single-turn requests use the semantic cache unless a request says otherwise.
    semantic_cache_tenants: str = ""
    embedding_cache_ttl_s: int = 86_400
    # The in-process cache's byte budget (answers, embeddings; the semantic cache's in-process
    # buckets get a quarter more). Sized with FEEDBACK_PROMPT_MAX_BYTES for a 2 GB container:
    # ~300 MB of baseline, 256 + 64 + 256 MiB of caches, the rest for requests in flight.
    cache_max_bytes: int = Field(default=256 * 2**20, ge=2**20)

    # --- Weaviate -------------------------------------------------------------------------------
    weaviate_url: str | None = None
    weaviate_api_key: SecretStr | None = None
    weaviate_grpc_host: str | None = None
    weaviate_grpc_port: int = 50051
    weaviate_grpc_secure: bool | None = None
    weaviate_timeout_s: float = 2.0
    weaviate_insert_timeout_s: float = 60.0
    weaviate_collection: str = "LLMDocument"
    # load the starter examples into a freshly created (empty) collection
    weaviate_seed_examples: bool = True
    weaviate_backup_backend: str = "azure"
    backup_check_schedule: str = "0 0 */6 * * *"
    backup_max_age_hours: float = 24.0
    feedback_to_examples: bool = True
    store_prompt_text: bool = True
    # Tenants whose prompt text may be kept for feedback examples ("*" = every tenant); for the
    # others only the prompt's vector is kept (docs/weaviate.md "Feedback to examples").
    store_prompt_text_tenants: str = "*"
    feedback_prompt_ttl_s: int = 7 * 86_400
    # The byte budget of prompts kept in process for feedback (without Redis); the oldest go first.
    # With Redis they are Redis's to bound (maxmemory with a volatile-* policy: every one has a TTL).
    feedback_prompt_max_bytes: int = Field(default=256 * 2**20, ge=2**20)
    feedback_examples_schedule: str = "0 */5 * * * *"
    backup_check_run_on_startup: bool = False

    # --- auth ---------------------------------------------------------------------------------------
    auth_enabled: bool = True
    jwt_secret: SecretStr | None = None
    jwt_issuer: str = "llm-router"
    jwt_audience: str = "llm-router"
    azure_tenant_id: str | None = None
    azure_client_id: str | None = None
    azure_client_secret: SecretStr | None = None
    azure_app_id_uri: str | None = None
    azure_authority_host: str = "https://login.microsoftonline.com"
    metrics_public: bool = False

    # --- quotas -------------------------------------------------------------------------------------
    quota_requests_per_minute: int = 600
    quota_tokens_per_day: int = 5_000_000
    quota_usd_per_month: float = 500.0
    # Which models each tenant may use, as JSON: {"tenant-a": ["gemini-2.5-flash", ...]}.
    # Tenants not listed may use every enabled model.
    tenant_model_allowlist: dict[str, list[str]] = Field(default_factory=dict)

    # --- self-labelling from traffic (shared/shadow/, docs/routing-quality.md) -------------------
    # The share of answered requests also sent, after the answer, to a model of another tier and
    # judged pairwise against it; the verdicts become the tenant's labelled examples. 0 = off.
    shadow_sample_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    # Shadow and judge spend per tenant and UTC day; checked before every shadow or judge call.
    shadow_usd_per_day: float = Field(default=1.0, ge=0.0)
    # The catalog model that judges; empty: the catalog's frontier model with the highest prior.
    shadow_judge_model: str = ""
    # Shadow labellings running at once per process; a sampled answer beyond it is skipped.
    shadow_max_in_flight: int = Field(default=8, ge=1)

    # --- Vertex AI ----------------------------------------------------------------------------------
    google_cloud_project_id: str | None = None
    vertex_ai_location: str = "us-central1"
    vertex_ai_base_url: str | None = None
    google_application_credentials_json: SecretStr | None = None
    # Workload identity federation from Azure, no key (shared/providers/vertex_wif.py, docs/deploy.md
    # step 5): the managed identity's Entra token for VERTEX_WIF_ENTRA_AUDIENCE is exchanged at Google
    # STS for VERTEX_WIF_PROVIDER (projects/<number>/locations/global/workloadIdentityPools/<pool>/
    # providers/<provider>) and VERTEX_WIF_SERVICE_ACCOUNT is impersonated. Used when the three are set
    # and GOOGLE_APPLICATION_CREDENTIALS_JSON is not. The URLs change only for tests.
    vertex_wif_provider: str | None = None
    vertex_wif_service_account: str | None = None
    vertex_wif_entra_audience: str | None = None
    vertex_wif_sts_url: str = "https://sts.googleapis.com/v1/token"
    vertex_wif_iam_url: str = "https://iamcredentials.googleapis.com/v1"
    vertex_wif_token_lifetime_s: int = Field(default=3600, ge=600, le=43200)

    # --- Service Bus ------------------------------------------------------------------------------
    service_bus_connection_string: SecretStr | None = None
    service_bus_namespace: str | None = None
    service_bus_queue: str = "llm-router-requests"
    service_bus_max_delivery_count: int = 10
    # The settings the Functions host's Service Bus trigger reads (connection="ServiceBusConnection"):
    # a connection string, or the namespace for identity-based connections. The sender uses these
    # first, so jobs go where the trigger listens (shared/queue/servicebus.py namespace_problems).
    service_bus_trigger_connection: SecretStr | None = Field(default=None, validation_alias="ServiceBusConnection")
    service_bus_trigger_namespace: str | None = Field(
        default=None, validation_alias="ServiceBusConnection__fullyQualifiedNamespace"
    )
    max_job_message_bytes: int = 256_000

    @field_validator("service_bus_trigger_namespace", mode="before")
    @classmethod
    def _placeholder_is_unset(cls, value: object) -> object:
        # local.settings.sample.json carries "<your-namespace>.servicebus.windows.net" so Core Tools
        # can index the trigger; copied as is, it names no namespace and must not switch jobs to it
        return None if isinstance(value, str) and value.startswith(SAMPLE_PLACEHOLDER) else value

    # --- secrets and telemetry ----------------------------------------------------------------------
    key_vault_url: str | None = None
    applicationinsights_connection_string: SecretStr | None = None
    python_applicationinsights_enable_telemetry: bool = False
    functions_worker_process_count: int = 1

    @property
    def fallback_reasons(self) -> frozenset[str]:
        return frozenset(r.strip() for r in self.fallback_on.split(",") if r.strip())

    @property
    def is_production(self) -> bool:
        return self.environment == "production"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def secret_value(secret: SecretStr | None) -> str | None:
    return secret.get_secret_value() if secret is not None else None


__all__ = ["PACKAGE_DIR", "Field", "Policy", "Settings", "get_settings", "secret_value"]
