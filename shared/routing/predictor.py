"""Predicted quality per model from the nearest labelled examples.

For each model the estimate is the similarity-weighted mean outcome of the neighbours that
carry an outcome for it, shrunk toward the model's prior by `prior_strength` pseudo-examples
of full similarity:

    q = (sum_i w_i * y_i + strength * prior) / (sum_i w_i + strength),   w_i = max(sim_i, 0) ** power

so that a prompt far from every example (little similarity mass) falls back to the prior
instead of trusting a few accidental neighbours. k, strength and power were chosen by
cross-validation on the training split of the routing evaluation (docs/routing-quality.md):
wide neighbourhoods (k = 200) with mild sharpening (power = 2) and strong shrinkage (20) carry
the topic-level signal best with the 128-dimension encoder.
Pure functions; no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .examples import Neighbour, Neighbours


@dataclass(frozen=True)
class PredictorParams:
    k: int = 200
    prior_strength: float = 20.0
    similarity_power: float = 2.0


@dataclass(frozen=True)
class QualityEstimate:
    quality: float
    evidence: float  # similarity mass of the neighbours behind the estimate
    key: str | None  # which outcome key spoke for the model (None: prior only)


def predict_qualities(
    neighbours: Sequence[Neighbour],
    label_keys: Sequence[Sequence[str]],
    priors: Sequence[float],
    params: PredictorParams,
) -> list[QualityEstimate]:
    """One estimate per model; `label_keys[i]` are the outcome keys that speak for model i,
    most specific first (a model's own outcomes, then its tier's)."""
    nbs = Neighbours.of(neighbours)
    weights = np.power(np.clip(nbs.similarities, 0.0, None), params.similarity_power) * nbs.weights
    out: list[QualityEstimate] = []
    for keys, prior in zip(label_keys, priors, strict=True):
        out.append(_estimate(nbs, weights, keys, prior, params.prior_strength))
    return out


def _estimate(
    nbs: Neighbours,
    weights: np.ndarray,
    keys: Sequence[str],
    prior: float,
    strength: float,
) -> QualityEstimate:
    for key in keys:
        j = nbs.key_index.get(key)
        if j is None:
            continue
        col = nbs.outcomes[:, j]
        have = ~np.isnan(col) & (weights > 0.0)
        if not have.any():
            continue
        w = weights[have]
        w_sum = float(w.sum())
        q = (float(w @ col[have]) + strength * prior) / (w_sum + strength)
        return QualityEstimate(quality=q, evidence=w_sum, key=key)
    return QualityEstimate(quality=float(prior), evidence=0.0, key=None)


def outcome_priors(outcomes: Sequence[dict[str, float]]) -> dict[str, float]:
    """Mean outcome per key over a set of examples: each model's prior."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for row in outcomes:
        for key, val in row.items():
            sums[key] = sums.get(key, 0.0) + val
            counts[key] = counts.get(key, 0) + 1
    return {k: sums[k] / counts[k] for k in sums}
