"""The model catalog: which models exist, what they can do, what they cost."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import ModelNotFound, ModelRetired, shorten

Tier = Literal["frontier", "balanced", "economy"]
Capability = Literal["tools", "vision", "json"]


class ModelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    provider: Literal["vertex", "openai"]
    upstream_model: str
    base_url: str | None = None
    api_key_env: str | None = None
    auth: Literal["api_key", "google", "none"] = "api_key"
    tier: Tier
    context_window: int = Field(gt=0)
    max_output_tokens: int = Field(gt=0)
    input_usd_per_mtok: float = Field(ge=0)
    output_usd_per_mtok: float = Field(ge=0)
    capabilities: frozenset[Capability] = frozenset()
    quality_prior: float = Field(default=0.7, ge=0, le=1)
    latency_ms_p50: float = Field(default=1000, gt=0)
    connect_timeout_s: float | None = None
    read_timeout_s: float | None = None
    enabled: bool = True
    description: str | None = None

    @model_validator(mode="after")
    def _openai_needs_url(self) -> ModelSpec:
        if self.provider == "openai" and not self.base_url:
            raise ValueError(f"model {self.id}: provider 'openai' needs base_url")
        return self

    @property
    def label_keys(self) -> tuple[str, ...]:
        """Outcome keys of labelled examples that speak for this model, most specific first."""
        return (self.id, f"tier:{self.tier}")

    def cost_usd(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input_usd_per_mtok + completion_tokens * self.output_usd_per_mtok) / 1_000_000

    def public(self) -> dict[str, object]:
        return {
            "id": self.id,
            "object": "model",
            "owned_by": "google" if self.provider == "vertex" else "openai-compatible",
            "provider": self.provider,
            "tier": self.tier,
            "context_window": self.context_window,
            "max_output_tokens": self.max_output_tokens,
            "pricing": {
                "input_usd_per_mtok": self.input_usd_per_mtok,
                "output_usd_per_mtok": self.output_usd_per_mtok,
            },
            "capabilities": sorted(self.capabilities),
            "quality_prior": self.quality_prior,
            "enabled": self.enabled,
        }


class _CatalogFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    models: list[ModelSpec]
    retired: dict[str, str] = {}


class CatalogError(ValueError):
    pass


class Catalog:
    def __init__(self, models: list[ModelSpec], retired: dict[str, str] | None = None) -> None:
        ids = [m.id for m in models]
        dupes = {i for i in ids if ids.count(i) > 1}
        if dupes:
            raise CatalogError(f"duplicate model ids in catalog: {sorted(dupes)}")
        self._models = {m.id: m for m in models}
        self.retired = dict(retired or {})

    @classmethod
    def load(cls, path: Path) -> Catalog:
        try:
            raw = yaml.safe_load(Path(path).read_text())
            parsed = _CatalogFile.model_validate(raw)
        except FileNotFoundError:
            raise CatalogError(f"model catalog not found at {path} (MODEL_CATALOG_PATH)") from None
        except (yaml.YAMLError, ValidationError) as exc:
            raise CatalogError(f"model catalog {path} is invalid: {exc}") from None
        return cls(parsed.models, parsed.retired)

    def __iter__(self) -> Iterator[ModelSpec]:
        return iter(self._models.values())

    def __len__(self) -> int:
        return len(self._models)

    def __contains__(self, model_id: object) -> bool:
        return model_id in self._models

    def enabled(self) -> list[ModelSpec]:
        return [m for m in self._models.values() if m.enabled]

    def get(self, model_id: str) -> ModelSpec:
        """The model for an explicit request, or a 404/410 that says what to use instead."""
        spec = self._models.get(model_id)
        if spec is not None:
            if not spec.enabled:
                raise ModelNotFound(f"Model '{model_id}' is disabled in the catalog.", param="model")
            return spec
        if model_id in self.retired:
            repl = self.retired[model_id]
            raise ModelRetired(
                f"Model '{model_id}' has been retired by its provider; use '{repl}' instead.",
                param="model",
            )
        known = ", ".join(sorted(m.id for m in self.enabled()))
        raise ModelNotFound(
            f"Model '{shorten(model_id)}' is not in the catalog. Use 'auto' (or auto:quality, auto:cost, "
            f"auto:balanced, auto:latency) or one of: {known}.",
            param="model",
        )
