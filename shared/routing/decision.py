"""A routing decision: the chosen model, the ranking behind it and the evidence, and how
/api/v1/route shows it."""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..catalog import ModelSpec
from ..examples.labelled import Neighbour, Neighbours
from .policy import Candidate, PolicyName


@dataclass
class Decision:
    chosen: ModelSpec
    policy: PolicyName
    ranked: list[Candidate]
    candidates: list[Candidate]
    neighbours: Sequence[Neighbour]
    decision_ms: float
    own_neighbours: Sequence[Neighbour] = ()
    index_status: str = "ok"
    vector: np.ndarray | None = field(default=None, repr=False)
    confidence: float = 1.0
    confidence_reason: str = ""
    low_confidence: bool = False
    tenant_prior_examples: int = 0  # the examples the tenant's own prior was fitted on (0: none used)
    tenant_space: bool = False  # the tenant's own neighbours were found in its own space

    @property
    def fallbacks(self) -> list[ModelSpec]:
        return [c.model for c in self.ranked[1:]]

    def public(self, listed: int | None = None) -> dict[str, object]:
        """The decision as /api/v1/route shows it; `listed` caps each neighbour list at its most
        similar rows (None: all k of them)."""
        position = {id(c): n for n, c in enumerate(self.ranked, start=1)}
        rows = [c.public(position.get(id(c))) for c in self.ranked]
        rows += [c.public(None) for c in self.candidates if not c.eligible]
        top = self.ranked[0]
        nbs = Neighbours.of(self.neighbours)
        # most requests have no tenant rows: an empty list costs ~7 µs to turn into arrays
        own = (Neighbours.of(self.own_neighbours),) if len(self.own_neighbours) else ()
        return {
            "model": self.chosen.id,
            "policy": self.policy,
            "predicted_quality": round(top.predicted_quality, 4),
            "estimated_cost_usd": round(top.estimated_cost_usd, 8),
            "reason": top.notes[0] if top.notes else "only eligible model",
            "fallbacks": [m.id for m in self.fallbacks],
            "candidates": rows,
            # the shared and the tenant's own neighbours together, most similar first
            "neighbours": _similarity_rows(nbs, *own, limit=listed),
            "tenant_neighbours": _similarity_rows(*own, limit=listed),
            "neighbours_total": len(nbs) + len(self.own_neighbours),
            "tenant_neighbours_total": len(self.own_neighbours),
            "index": self.index_status,
            "confidence": round(self.confidence, 3),
            "low_confidence": self.low_confidence,
            "confidence_reason": self.confidence_reason,
            "tenant_prior_examples": self.tenant_prior_examples,
            "tenant_space": self.tenant_space,
            "decision_ms": round(self.decision_ms, 3),
        }


def _similarity_rows(*parts: Neighbours, limit: int | None = None) -> list[dict[str, object]]:
    """{"id", "similarity"} for the `limit` most similar neighbours of all parts (ties: in the
    order given). Only the listed rows' ids are gathered, and the common case (one part) takes
    the fewest numpy calls: each costs microseconds in a cache-cold serving process."""
    parts = tuple(p for p in parts if len(p))
    if not parts or limit == 0:
        return []
    sims = parts[0].similarities if len(parts) == 1 else np.concatenate([p.similarities for p in parts])
    order = (-sims).argsort(kind="stable")[:limit]  # methods, not np.argsort/np.round: no wrappers
    if len(parts) == 1:
        ids = parts[0].ids_at(order)
    else:
        top: list[int] = order.tolist()
        starts = list(itertools.accumulate((len(p) for p in parts), initial=0))
        which = [bisect.bisect_right(starts, n) - 1 for n in top]
        ids = [""] * len(top)
        for i, part in enumerate(parts):
            slots = [j for j, w in enumerate(which) if w == i]
            for j, ident in zip(slots, part.ids_at([top[j] - starts[i] for j in slots]), strict=True):
                ids[j] = ident
    rounded = sims[order].round(4).tolist()
    return [{"id": ident, "similarity": s} for ident, s in zip(ids, rounded, strict=True)]
