"""Predicted quality per model from the nearest labelled examples.

For each model the estimate is the similarity-weighted mean outcome of the neighbours that
carry an outcome for it, shrunk toward the model's prior by the amount of evidence: with
n_eff the Kish effective sample size of the weights,

    q = (n_eff * weighted_mean + strength * prior) / (n_eff + strength)

so that a prompt far from every example falls back to the prior instead of trusting two
accidental neighbours. Pure functions on arrays; no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .examples import Neighbour


@dataclass(frozen=True)
class PredictorParams:
    k: int = 40
    prior_strength: float = 4.0
    similarity_power: float = 4.0


@dataclass(frozen=True)
class QualityEstimate:
    quality: float
    evidence: float  # effective number of neighbours behind the estimate
    key: str | None  # which outcome key spoke for the model (None: prior only)


def neighbour_weights(neighbours: Sequence[Neighbour], power: float) -> np.ndarray:
    sims = np.fromiter((n.similarity for n in neighbours), dtype=np.float64, count=len(neighbours))
    ex_w = np.fromiter((n.weight for n in neighbours), dtype=np.float64, count=len(neighbours))
    return np.power(np.clip(sims, 0.0, None), power) * ex_w


def predict_qualities(
    neighbours: Sequence[Neighbour],
    label_keys: Sequence[Sequence[str]],
    priors: Sequence[float],
    params: PredictorParams,
) -> list[QualityEstimate]:
    """One estimate per model; `label_keys[i]` are the outcome keys that speak for model i."""
    weights = neighbour_weights(neighbours, params.similarity_power)
    out: list[QualityEstimate] = []
    for keys, prior in zip(label_keys, priors, strict=True):
        est = _estimate(neighbours, weights, keys, prior, params.prior_strength)
        out.append(est)
    return out


def _estimate(
    neighbours: Sequence[Neighbour],
    weights: np.ndarray,
    keys: Sequence[str],
    prior: float,
    strength: float,
) -> QualityEstimate:
    for key in keys:
        w_sum = 0.0
        w_sq = 0.0
        acc = 0.0
        for nb, w in zip(neighbours, weights, strict=True):
            y = nb.outcomes.get(key)
            if y is None or w <= 0.0:
                continue
            w_sum += w
            w_sq += w * w
            acc += w * y
        if w_sum > 0.0:
            n_eff = (w_sum * w_sum) / w_sq
            mean = acc / w_sum
            q = (n_eff * mean + strength * prior) / (n_eff + strength)
            return QualityEstimate(quality=float(q), evidence=float(n_eff), key=key)
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
