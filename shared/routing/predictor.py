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

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from ..examples.labelled import Neighbour, Neighbours

if TYPE_CHECKING:
    from .tenant_prior import TenantPrior


@dataclass(frozen=True)
class PredictorParams:
    k: int = 200
    prior_strength: float = 20.0
    similarity_power: float = 2.0
    # A model's own outcomes (feedback naming the model that answered, usually a tenant's own
    # prompts) are shrunk toward its tier's estimate with this many pseudo-examples, not
    # replaced by nothing: a few own labels nudge the tier estimate, many take over
    # (docs/routing-quality.md, "Learning from feedback").
    own_strength: float = 1.0
    # A tenant's own examples are read by a second, tenant-only search (own_k neighbours), so that
    # thousands of shared examples cannot crowd them out of the k slots. Their estimate is shrunk
    # toward the shared one with tenant_strength similarity mass (a fifth of one identical
    # example): a tenant's evidence takes over as soon as there is some, because the shared
    # examples may be of another domain entirely. 0.2 against 1: equal within ±0.005 on three
    # held-out sources' learning curves, +0.007 to +0.018 on AlpacaEval, where the shared estimate
    # is worse than random (docs/routing-quality.md, "Learning from a tenant's own labels").
    # own_k is twice k because feedback makes one example per answering model, so each of the
    # tenant's prompts appears about twice.
    own_k: int = 400
    tenant_strength: float = 0.2
    # With a prior fitted on the tenant's own labels (tenant_prior.py), the tenant's estimate is
    # shrunk toward that instead, as strongly as the shared estimate is toward the shipped prior
    # unless leave-one-out over the tenant's labels chose less.
    tenant_prior_strength: float = 20.0


@dataclass(frozen=True)
class QualityEstimate:
    quality: float
    evidence: float  # similarity mass of the neighbours behind the estimate
    key: str | None  # which outcome key spoke for the model (None: prior only)

    def confidence(self, params: PredictorParams) -> float:
        """Share of the estimate that comes from neighbours rather than the prior, 0..1."""
        return self.evidence / (self.evidence + params.prior_strength) if self.evidence > 0 else 0.0


def predict_qualities(
    neighbours: Sequence[Neighbour],
    label_keys: Sequence[Sequence[str]],
    priors: Sequence[float],
    params: PredictorParams,
    strengths: Sequence[float] | None = None,
) -> list[QualityEstimate]:
    """One estimate per model; `label_keys[i]` are the outcome keys that speak for model i,
    most specific first (a model's own outcomes, then its tier's).

    The most general key with evidence is shrunk toward the prior by `prior_strength` (or model
    i's `strengths[i]`); each more specific key is then shrunk toward that estimate by
    `own_strength`, so a model's own outcomes refine its tier's evidence instead of discarding it."""
    nbs = Neighbours.of(neighbours)
    mass, weighted = evidence_by_key(nbs, params.similarity_power)
    out: list[QualityEstimate] = []
    for i, (keys, prior) in enumerate(zip(label_keys, priors, strict=True)):
        q, evidence, used = float(prior), 0.0, None
        first = params.prior_strength if strengths is None else strengths[i]
        for key in reversed(keys):
            j = nbs.key_index.get(key)
            if j is None or mass[j] <= 0.0:
                continue
            strength = first if used is None else params.own_strength
            w_sum = mass[j]
            q = (weighted[j] + strength * q) / (w_sum + strength)
            evidence += w_sum
            used = key
        out.append(QualityEstimate(quality=q, evidence=evidence, key=used))
    return out


def estimate(
    shared: Sequence[Neighbour],
    own: Sequence[Neighbour],
    label_keys: Sequence[Sequence[str]],
    priors: Sequence[float],
    params: PredictorParams,
    tenant_prior: TenantPrior | None = None,
    text: str = "",
) -> list[QualityEstimate]:
    """Every model's estimate: from the shared examples (shrunk toward the prior), then refined by
    the tenant's own examples, shrunk toward the tenant's prior for `text` where it has one
    at the strength its fit chose for the key (by default `tenant_prior_strength`), else toward
    the shared estimate (`tenant_strength`)."""
    base = predict_qualities(shared, label_keys, priors, params)
    if not len(own):
        return base
    targets = [e.quality for e in base]
    strengths = None
    if tenant_prior is not None:
        mine = tenant_prior.targets(text, label_keys, targets)
        strengths = [params.tenant_strength if p is None else p[1] for p in mine]
        targets = [t if p is None else p[0] for t, p in zip(targets, mine, strict=True)]
    local = predict_qualities(
        own, label_keys, targets, replace(params, prior_strength=params.tenant_strength), strengths
    )
    return [
        QualityEstimate(quality=mine.quality, evidence=common.evidence + mine.evidence, key=mine.key or common.key)
        for common, mine in zip(base, local, strict=True)
    ]


def evidence_by_key(nbs: Neighbours, power: float) -> tuple[list[float], list[float]]:
    """Per outcome key: the similarity mass of the neighbours that have an outcome for it, and
    the mass-weighted sum of those outcomes. One product over the k x keys evidence matrix for
    every model, as plain floats (the per-model arithmetic that follows is scalar)."""
    key = ("evidence", power)
    cached = nbs.cache.get(key)
    if cached is None:
        totals: list[float] = (nbs.mass_weights(power) @ nbs.evidence).tolist()
        n = len(nbs.keys)
        cached = (totals[:n], totals[n:])
        nbs.cache[key] = cached
    return cached  # type: ignore[return-value]


def outcome_priors(outcomes: Sequence[dict[str, float]]) -> dict[str, float]:
    """Mean outcome per key over a set of examples: each model's prior."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for row in outcomes:
        for key, val in row.items():
            sums[key] = sums.get(key, 0.0) + val
            counts[key] = counts.get(key, 0) + 1
    return {k: sums[k] / counts[k] for k in sums}


def gain_stderrs(neighbours: Sequence[Neighbour], base_key: str, params: PredictorParams) -> dict[str, float]:
    """Per outcome key, the standard error of its estimate's gain over `base_key`'s, from the
    neighbours that carry both outcomes (paired: what the two share, an easy or a hard prompt,
    cancels), with the estimate's shrinkage:

        se = sqrt(var_w(g) * sum(w ** 2)) / (sum(w) + prior_strength),   g = y_key - y_base

    A key that no neighbour carries beside `base_key` is left out (no spread to measure).
    The balanced policy pays for an upgrade only when its gain clears its cost by this margin
    (policy.rank, docs/routing-quality.md "Paying for an upgrade")."""
    nbs = Neighbours.of(neighbours)
    j = nbs.key_index.get(base_key)
    if j is None or not len(nbs):
        return {}
    n = len(nbs.keys)
    ev = nbs.evidence  # k x 2n: presence of each key's outcome, then the outcome (0 where absent)
    # The weighted moments of g = y_key - y_base expand into sums over rows carrying the base
    # outcome: one (4 x k) @ (k x 2n) product and one k-vector product give them for every key,
    # and the few per-key results are scalar arithmetic (numpy's per-call cost dominates here).
    y_base = ev[:, n + j]
    v = np.empty((4, len(nbs)))  # filled in place: np.stack of four temporaries costs half again
    w_base = np.multiply(nbs.mass_weights(params.similarity_power), ev[:, j], out=v[0])
    np.multiply(w_base, y_base, out=v[1])
    np.multiply(v[1], y_base, out=v[2])
    np.multiply(w_base, w_base, out=v[3])
    sums = (v @ ev).tolist()
    squares = (w_base @ np.square(ev[:, n:])).tolist()
    out: dict[str, float] = {}
    for i, key in enumerate(nbs.keys):
        total = sums[0][i]  # sum(w) over rows carrying both outcomes
        if total <= 0.0:
            continue
        mean = (sums[0][n + i] - sums[1][i]) / total
        mean_square = (squares[i] - 2.0 * sums[1][n + i] + sums[2][i]) / total
        var = mean_square - mean * mean
        # E[g²] - E[g]² cancels where every neighbour has the same gain, and what is left is the
        # BLAS kernel's rounding (after the square root, 1.7e-9 with OpenBLAS's Haswell and Zen
        # kernels, 0 with SkylakeX): that is no spread, whichever kernel the machine gets. The
        # rounding scales with the squared outcomes the sums were made of, not with what is left
        # (a key against itself leaves nothing but rounding)
        if var <= 1e-12 * (squares[i] + sums[2][i]) / total:
            var = 0.0
        out[key] = math.sqrt(var * sums[3][i]) / (total + params.prior_strength)
    return out


class GainSpread:
    """`spread(keys, base_keys)`: the standard error of a model's gain over a base model, for
    policy.rank, from one decision's neighbours: on the most specific pair of their label keys
    that neighbours carry together (examples labelled per model), else on their tiers (the
    shipped examples); 0.0 where none does. Each base key's errors are computed once."""

    def __init__(self, neighbours: Sequence[Neighbour], params: PredictorParams) -> None:
        self.neighbours, self.params = neighbours, params
        self._by_base: dict[str, dict[str, float]] = {}

    def __call__(self, keys: Sequence[str], base_keys: Sequence[str]) -> float:
        for key, base in zip(keys, base_keys, strict=False):
            if base not in self._by_base:
                self._by_base[base] = gain_stderrs(self.neighbours, base, self.params)
            if key in self._by_base[base]:
                return self._by_base[base][key]
        return 0.0
