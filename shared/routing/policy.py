"""Policies: how predicted quality, cost and latency turn into a ranking. Pure functions.

- quality:  highest predicted quality; cost breaks ties.
- cost:     cheapest model whose predicted quality is within the calibrated margin of the best.
- latency:  fastest model within the same margin.
- balanced: highest utility = quality - weight * log10(cost / cheapest cost).
Models are then ranked so that the fallbacks are the next-best choices under the same policy.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from ..catalog import ModelSpec

PolicyName = Literal["quality", "cost", "balanced", "latency"]
# the standard error of a model's predicted gain over a base model's, by their label keys
# (predictor.GainSpread)
Spread = Callable[[Sequence[str], Sequence[str]], float]


@dataclass
class Candidate:
    model: ModelSpec
    predicted_quality: float
    evidence: float
    estimated_cost_usd: float
    excluded: str | None = None
    confidence: float = 0.0
    score: float = 0.0
    gain_stderr: float = 0.0  # of its predicted gain over the cheapest eligible model (balanced)
    notes: list[str] = field(default_factory=list)

    @property
    def eligible(self) -> bool:
        return self.excluded is None

    def public(self, rank: int | None) -> dict[str, object]:
        return {
            "model": self.model.id,
            "rank": rank,
            "tier": self.model.tier,
            "predicted_quality": round(self.predicted_quality, 4),
            "evidence": round(self.evidence, 2),
            "confidence": round(self.confidence, 3),
            "estimated_cost_usd": round(self.estimated_cost_usd, 8),
            "latency_ms_p50": self.model.latency_ms_p50,
            "score": round(self.score, 4),
            "gain_stderr": round(self.gain_stderr, 4),
            "eligible": self.eligible,
            "reason": self.excluded or "; ".join(self.notes) or "eligible",
        }


def rank(
    candidates: list[Candidate],
    policy: PolicyName,
    *,
    margin: float,
    cost_weight: float,
    upgrade_z: float = 0.0,
    spread: Spread | None = None,
) -> list[Candidate]:
    """Eligible candidates, best first, with `score` and a kept-because note set on each.

    balanced: a model dearer than the cheapest eligible one counts its predicted gain over it
    `upgrade_z` standard errors lower (`spread`), so an upgrade is paid for only where the
    evidence shows its gain beyond its cost at that one-sided confidence."""
    pool = [c for c in candidates if c.eligible]
    if not pool:
        return []
    best_q = max(c.predicted_quality for c in pool)
    if policy == "quality":
        for c in pool:
            c.score = c.predicted_quality
        ordered = sorted(pool, key=lambda c: (-c.predicted_quality, c.estimated_cost_usd, c.model.id))
        ordered[0].notes.append("highest predicted quality")
        return ordered
    if policy in ("cost", "latency"):

        def axis(c: Candidate) -> float:
            return c.estimated_cost_usd if policy == "cost" else c.model.latency_ms_p50

        within = [c for c in pool if c.predicted_quality >= best_q - margin]
        rest = [c for c in pool if c.predicted_quality < best_q - margin]
        within.sort(key=lambda c: (axis(c), -c.predicted_quality, c.model.id))
        rest.sort(key=lambda c: (-c.predicted_quality, axis(c), c.model.id))
        for c in within:
            c.score = -axis(c)
            c.notes.append(f"within {margin:.3f} of the best predicted quality")
        for c in rest:
            c.score = c.predicted_quality - best_q
            c.notes.append(f"more than {margin:.3f} below the best predicted quality")
        word = "cheapest" if policy == "cost" else "fastest"
        if within:
            within[0].notes.insert(0, word)
        return within + rest
    return _balanced(pool, cost_weight, upgrade_z, spread)


def _balanced(pool: list[Candidate], cost_weight: float, upgrade_z: float, spread: Spread | None) -> list[Candidate]:
    base = min(pool, key=lambda c: (c.estimated_cost_usd, c.model.id))
    cheapest = max(base.estimated_cost_usd, 1e-12)
    for c in pool:
        ratio = max(c.estimated_cost_usd, 1e-12) / cheapest
        if spread is not None and c is not base:
            c.gain_stderr = spread(c.model.label_keys, base.model.label_keys)
        c.score = c.predicted_quality - upgrade_z * c.gain_stderr - cost_weight * math.log10(ratio)
    ordered = sorted(pool, key=lambda c: (-c.score, c.estimated_cost_usd, c.model.id))
    ordered[0].notes.append("best quality for its cost")
    ahead = max(pool, key=lambda c: (c.score + upgrade_z * c.gain_stderr, -c.estimated_cost_usd))
    if ahead is not ordered[0]:
        ordered[0].notes.append(f"{ahead.model.id} is ahead only on its point estimate: its gain is not shown")
    for c in ordered:
        if upgrade_z * c.gain_stderr > 0.0:
            c.notes.append(
                f"gain over {base.model.id} counted {upgrade_z * c.gain_stderr:.3f} lower "
                f"({upgrade_z:.2f} standard errors)"
            )
    return ordered


def rank_unsure(candidates: list[Candidate], policy: PolicyName) -> list[Candidate]:
    """The ranking when the router's confidence is low: the predicted differences between models
    are not trusted, so the cheapest (latency: fastest) eligible model comes first and the rest
    follow by predicted quality, as fallbacks."""
    pool = [c for c in candidates if c.eligible]
    if not pool:
        return []

    def axis(c: Candidate) -> float:
        return c.model.latency_ms_p50 if policy == "latency" else c.estimated_cost_usd

    first = min(pool, key=lambda c: (axis(c), -c.predicted_quality, c.model.id))
    rest = sorted((c for c in pool if c is not first), key=lambda c: (-c.predicted_quality, axis(c), c.model.id))
    word = "fastest" if policy == "latency" else "cheapest"
    first.notes.insert(0, f"low confidence: {word} eligible model")
    for c in [first, *rest]:
        c.score = -axis(c) if c is first else c.predicted_quality
    return [first, *rest]
