"""The routing decision: constraints -> predicted quality -> policy -> ranked models."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Sequence
from statistics import NormalDist
from typing import Any, Protocol

import numpy as np
from opentelemetry import trace

from ..catalog import Catalog, ModelSpec
from ..encoders.base import AsyncEncoder, Encoder, SingleTextEncoder
from ..errors import InvalidRequest, NoEligibleModel, PermissionDenied
from ..examples.labelled import Neighbour
from ..telemetry import span
from .decision import Decision
from .difficulty import DifficultyModel, load_default
from .policy import Candidate, rank, rank_unsure
from .predictor import GainSpread, PredictorParams, estimate, predict_qualities
from .request import RoutingRequest, exclusion
from .tenant_prior import TenantPrior, TenantPriors
from .typicality import TypicalityFloor, neighbour_mass
from .typicality import load_default as load_typicality

log = logging.getLogger(__name__)

# When the caller sets no max_tokens, cost is estimated for an answer of this many tokens.
DEFAULT_EXPECTED_OUTPUT_TOKENS = 512
# Below this confidence (the share of the quality estimate that comes from labelled neighbours
# rather than the prior, predictor.QualityEstimate.confidence) the router does not trust the
# estimate's differences between models: cost, balanced and latency take the cheapest (fastest)
# eligible model. Calibrated on leave-one-source-out data (docs/routing-quality.md, "Confidence").
MIN_CONFIDENCE = 0.25
_SHIPPED = "shipped"


class NeighbourSearch(Protocol):
    """What routing needs of an example index (shared/index/ implements it; routing does not
    import it, so the two share only the types of shared/examples/labelled.py)."""

    kind: str

    async def search(self, vector: np.ndarray, k: int, *, tenant: str | None = None) -> Sequence[Neighbour]: ...


class TenantSearch(Protocol):
    """An index that can also search one tenant's own examples only (LocalIndex, WeaviateIndex)."""

    async def search_own(self, vector: np.ndarray, k: int, *, tenant: str) -> Sequence[Neighbour]: ...


class Router:
    def __init__(
        self,
        catalog: Catalog,
        encoder: Encoder | AsyncEncoder,
        index: NeighbourSearch,
        *,
        params: PredictorParams | None = None,
        priors: dict[str, float] | None = None,
        margin: float = 0.04,
        cost_weight: float = 0.05,
        upgrade_confidence: float = 0.5,
        index_timeout_s: float = 2.0,
        difficulty: DifficultyModel | str | None = _SHIPPED,
        min_confidence: float = MIN_CONFIDENCE,
        typicality: TypicalityFloor | str | None = _SHIPPED,
        tenant_priors: TenantPriors | None = None,
    ) -> None:
        self.catalog = catalog
        self.encoder = encoder
        self.index = index
        self.params = params or PredictorParams()
        self.priors = dict(priors or {})
        self.margin = margin
        self.cost_weight = cost_weight
        self.upgrade_z = NormalDist().inv_cdf(upgrade_confidence) if upgrade_confidence > 0.5 else 0.0
        self.index_timeout_s = index_timeout_s
        # the per-prompt prior of each tier (difficulty.py); the shipped one unless told otherwise
        self.difficulty: DifficultyModel | None = load_default() if isinstance(difficulty, str) else difficulty
        self.min_confidence = min_confidence
        # the calibrated floor on neighbour mass (typicality.py), used only with the encoder state,
        # k and similarity power it was measured with
        floor = load_typicality() if isinstance(typicality, str) else typicality
        name = str(getattr(encoder, "name", ""))
        applies = floor is not None and floor.applies_to(name, self.params.k, self.params.similarity_power)
        self.typicality = floor if applies else None
        # a runtime-checkable Protocol's isinstance walks its attributes: decide it once
        self._remote_encoder = isinstance(encoder, AsyncEncoder)
        local_one = not self._remote_encoder and isinstance(encoder, SingleTextEncoder)
        self._encode_one: Callable[[str], np.ndarray] | None = encoder.encode_one if local_one else None  # type: ignore[union-attr]
        # how much of a prompt the encoder can read (TfidfSvdEncoder), for the typicality floor's second test
        support = getattr(encoder, "support", None) if not self._remote_encoder else None
        self._support: Callable[..., int] | None = support if callable(support) else None
        self._own_search: TenantSearch | None = index if callable(getattr(index, "search_own", None)) else None  # type: ignore[assignment]
        self.tenant_priors = tenant_priors if self._own_search is not None else None

    def prior_for(self, model: ModelSpec, per_prompt: dict[str, float] | None = None) -> float:
        """The prompt-difficulty prior of the model's tier when there is one, else the mean
        outcome of its keys over the examples, else the catalog's quality_prior."""
        for source in (per_prompt or {}, self.priors):
            for key in model.label_keys:
                if key in source:
                    return source[key]
        return model.quality_prior

    async def close(self) -> None:
        if self.tenant_priors is not None:
            await self.tenant_priors.close()

    async def shared_estimate(self, vector: np.ndarray, text: str, key: str) -> float:
        """The shared examples' estimate of outcome `key` for one prompt, as a decision makes it
        (what a tenant's prior is fitted against, tenant_prior.py)."""
        model = next((m for m in self.catalog if m.label_keys[0] == key), None)
        keys = model.label_keys if model is not None else (key,)
        per_prompt = self.difficulty.predict(text) if self.difficulty is not None and text else {}
        prior = (
            self.prior_for(model, per_prompt) if model is not None else per_prompt.get(key, self.priors.get(key, 0.5))
        )
        shared = await self.index.search(vector, self.params.k, tenant=None)
        return predict_qualities(shared, [keys], [prior], self.params)[0].quality

    async def encode(self, text: str) -> np.ndarray:
        if self._encode_one is not None:
            return self._encode_one(text)
        encoder: Any = self.encoder  # an Encoder or an AsyncEncoder, told apart once in __init__
        row: np.ndarray = (await encoder.aencode([text]) if self._remote_encoder else encoder.encode([text]))[0]
        return row

    async def neighbours(
        self, vector: np.ndarray, tenant: str | None, text: str = ""
    ) -> tuple[Sequence[Neighbour], Sequence[Neighbour], str]:
        """The shared neighbours and the tenant's own ones, and the index status. With an index
        that searches a tenant alone, the first search reads the shared examples only and the
        second the tenant's, so the tenant's labels are never crowded out; otherwise one search
        reads both. A tenant whose fit chose a space of its own (tenant_space.py) has its own
        neighbours found there, by `text`, in memory."""
        with span(
            "vector_search",
            kind=trace.SpanKind.CLIENT,
            attributes={"db.system": self.index.kind, "llm_router.k": self.params.k},
        ) as current:
            try:
                if self.index.kind == "local":  # in memory: nothing to time out
                    shared, own = await self._search(vector, tenant, text)
                else:
                    # asyncio.timeout, not wait_for: no extra task per search
                    async with asyncio.timeout(self.index_timeout_s):
                        shared, own = await self._search(vector, tenant, text)
                current.set_attribute("llm_router.neighbours", len(shared) + len(own))
                return shared, own, "ok"
            except Exception as exc:  # any index failure: route on priors, say so
                log.warning("example index unavailable, routing on priors: %s", type(exc).__name__)
                current.set_status(trace.StatusCode.ERROR, type(exc).__name__)
                return [], [], "index unavailable"

    async def _search(
        self, vector: np.ndarray, tenant: str | None, text: str
    ) -> tuple[Sequence[Neighbour], Sequence[Neighbour]]:
        if tenant is None or self._own_search is None:
            return await self.index.search(vector, self.params.k, tenant=tenant), []
        fitted = self.tenant_priors.peek(tenant) if self.tenant_priors is not None else None
        if fitted is not None and fitted.space is not None and text:
            shared = await self.index.search(vector, self.params.k, tenant=None)
            return shared, fitted.space.search(text, self.params.own_k)
        if self.index.kind == "local":
            shared = await self.index.search(vector, self.params.k, tenant=None)
            return shared, await self._own_search.search_own(vector, self.params.own_k, tenant=tenant)
        shared, own = await asyncio.gather(
            self.index.search(vector, self.params.k, tenant=None),
            self._own_search.search_own(vector, self.params.own_k, tenant=tenant),
        )
        return shared, own

    async def decide(self, req: RoutingRequest, *, open_circuits: Collection[str] = ()) -> Decision:
        t0 = time.perf_counter()
        models = self._models_for(req)
        candidates = [self._candidate(m, req, open_circuits) for m in models]
        live = [c for c in candidates if c.excluded is None]
        neighbours: Sequence[Neighbour] = []
        own: Sequence[Neighbour] = []
        index_status = "ok"
        vector = None
        if len(live) > 1 or req.min_quality is not None:
            try:
                vector = await self.encode(req.prompt)
            except Exception as exc:  # a remote encoder (embeddings API) failed: as for the index, route on priors
                log.warning("encoder unavailable, routing on priors: %s", type(exc).__name__)
                index_status = "index unavailable"
            else:
                neighbours, own, index_status = await self.neighbours(vector, req.tenant, req.prompt)
        per_prompt = self.difficulty.predict(req.prompt) if self.difficulty is not None and len(live) > 1 else {}
        mine = self._tenant_prior(req.tenant) if own else None
        self._predict(candidates, neighbours, own, index_status, per_prompt, (mine, req.prompt))
        if req.min_quality is not None:
            for c in candidates:
                if c.eligible and c.predicted_quality < req.min_quality:
                    c.excluded = f"predicted quality {c.predicted_quality:.3f} below min_quality {req.min_quality}"
        confidence, why, unsure = self._confidence(candidates, len(live), index_status)
        if not unsure and index_status == "ok" and len(live) > 1 and not own:
            why, unsure = self._atypical(neighbours, why, req.prompt)
        if unsure and req.policy != "quality":
            ranked = rank_unsure(candidates, req.policy)
        else:
            # a tenant's own labels, one model per example, carry no pairs: no spread is measured
            spread = None if own else GainSpread(neighbours, self.params)
            ranked = rank(
                candidates,
                req.policy,
                margin=self.margin,
                cost_weight=self.cost_weight,
                upgrade_z=self.upgrade_z,
                spread=spread,
            )
        if not ranked:
            reasons = "; ".join(f"{c.model.id}: {c.excluded}" for c in candidates) or "empty catalog"
            raise NoEligibleModel(f"No model satisfies this request's constraints ({reasons}).")
        return Decision(
            chosen=ranked[0].model,
            policy=req.policy,
            ranked=ranked,
            candidates=candidates,
            neighbours=neighbours,
            own_neighbours=own,
            decision_ms=(time.perf_counter() - t0) * 1000,
            index_status=index_status,
            vector=vector,
            confidence=confidence,
            confidence_reason=why,
            low_confidence=unsure,
            tenant_prior_examples=mine.examples if mine is not None else 0,
            tenant_space=mine is not None and mine.space is not None,
        )

    def _tenant_prior(self, tenant: str | None) -> TenantPrior | None:
        """The tenant's own prior, if fitted (a missing or stale one is fitted in the background)."""
        if tenant is None or self.tenant_priors is None:
            return None
        return self.tenant_priors.get(tenant, self.shared_estimate)

    def _confidence(self, candidates: Sequence[Candidate], live: int, index_status: str) -> tuple[float, str, bool]:
        """The decision's confidence: the best-evidenced model's share of neighbour evidence."""
        if live <= 1:
            return 1.0, "one eligible model: nothing to predict", False
        conf = max((c.confidence for c in candidates if c.eligible), default=0.0)
        if index_status != "ok":  # an outage is not the prompt's fault: the policy runs on the priors
            return conf, f"{index_status}: routed on the per-prompt priors", False
        if conf < self.min_confidence:
            return (
                conf,
                (
                    f"low: confidence {conf:.2f} below {self.min_confidence:.2f}, the labelled examples hold "
                    "nothing close to this prompt; the cheapest eligible model is chosen (quality policy: the "
                    "highest prior)"
                ),
                True,
            )
        return (
            conf,
            f"confidence {conf:.2f}: {conf / (1 - conf) * self.params.prior_strength:.1f} similarity-weighted examples",
            False,
        )

    def _atypical(self, neighbours: Sequence[Neighbour], why: str, text: str) -> tuple[str, bool]:
        """Low confidence when the neighbourhood is thinner than the examples' own, or the prompt
        gives the encoder less to read than the examples do (typicality.py)."""
        floor = self.typicality
        if floor is None:
            return why, False
        safe = "the cheapest eligible model is chosen (quality policy: the highest predicted quality)"
        mass = neighbour_mass(neighbours, self.params.similarity_power)
        if floor.unlike_the_examples(mass):
            why = f"low: neighbour mass {mass:.1f} below {floor.floor:.1f}, thinner than all but "
            why += f"{floor.rate:.1%} of the labelled examples' own: they hold nothing like this prompt; "
            return why + safe, True
        if floor.min_support and self._support is not None:
            known = self._support(text, floor.min_support)
            if floor.too_little_text(known):
                why = f"low: the encoder knows {known} of this prompt's words and word pairs, fewer than all but "
                why += f"{floor.rate:.1%} of the labelled examples ({floor.min_support}): its neighbours share a word "
                why += f"with it, not what it asks; {safe}"
                return why, True
        return why, False

    # -- steps ----------------------------------------------------------------------------
    def _models_for(self, req: RoutingRequest) -> list[ModelSpec]:
        if req.explicit_model is not None:
            spec = self.catalog.get(req.explicit_model)
            if req.tenant_allowed_models is not None and spec.id not in req.tenant_allowed_models:
                raise PermissionDenied(
                    f"Model '{spec.id}' is not allowed for this tenant; allowed: "
                    f"{', '.join(sorted(req.tenant_allowed_models)) or 'none'}.",
                    param="model",
                    code="model_not_allowed",
                )
            limit = req.max_output_tokens
            if limit is not None and limit > spec.max_output_tokens:
                raise InvalidRequest(
                    f"max_tokens {limit} exceeds {spec.id}'s limit of {spec.max_output_tokens}.",
                    param="max_tokens",
                    code="max_tokens_exceeded",
                )
            return [spec]
        return self.catalog.enabled()

    def _candidate(self, model: ModelSpec, req: RoutingRequest, open_circuits: Collection[str]) -> Candidate:
        out_tokens = req.max_output_tokens or min(DEFAULT_EXPECTED_OUTPUT_TOKENS, model.max_output_tokens)
        cost = model.cost_usd(req.prompt_tokens, out_tokens)
        c = Candidate(model=model, predicted_quality=0.0, evidence=0.0, estimated_cost_usd=cost)
        c.excluded = exclusion(model, req, open_circuits, out_tokens, cost)
        return c

    def _predict(
        self,
        candidates: Sequence[Candidate],
        neighbours: Sequence[Neighbour],
        own: Sequence[Neighbour],
        index_status: str,
        per_prompt: dict[str, float],
        tenant_prior: tuple[TenantPrior | None, str] = (None, ""),
    ) -> None:
        estimates = estimate(
            neighbours,
            own,
            [c.model.label_keys for c in candidates],
            [self.prior_for(c.model, per_prompt) for c in candidates],
            self.params,
            *tenant_prior,
        )
        anchors = self._tier_anchors(neighbours, per_prompt)
        for c, est in zip(candidates, estimates, strict=True):
            c.predicted_quality = est.quality
            c.evidence = est.evidence
            c.confidence = est.confidence(self.params)
            if est.key is None and anchors is not None:
                # no outcomes of its own or of its tier: place the model between the economy and
                # frontier estimates for this prompt, where its prior places it between their priors
                (q_low, p_low), (q_high, p_high) = anchors
                t = min(1.0, max(0.0, (self.prior_for(c.model, per_prompt) - p_low) / (p_high - p_low)))
                c.predicted_quality = min(1.0, max(0.0, q_low + t * (q_high - q_low)))
                c.notes.append("interpolated between the economy and frontier tiers")
            elif est.key is None:
                c.notes.append("index unavailable" if index_status != "ok" else "prior only")

    def _tier_anchors(
        self, neighbours: Sequence[Neighbour], per_prompt: dict[str, float]
    ) -> tuple[tuple[float, float], tuple[float, float]] | None:
        """Per-prompt estimates and priors of the economy and frontier tiers, when both exist."""
        keys = ("tier:economy", "tier:frontier")
        source = per_prompt if all(k in per_prompt for k in keys) else self.priors
        if not neighbours or any(k not in source for k in keys):
            return None
        priors = [source[k] for k in keys]
        if priors[1] - priors[0] <= 1e-6:
            return None
        low, high = predict_qualities(neighbours, [(k,) for k in keys], priors, self.params)
        if low.key is None or high.key is None:
            return None
        return (low.quality, priors[0]), (high.quality, priors[1])
