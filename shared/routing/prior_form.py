"""Whether a tenant's prior takes the shared estimate as an input (tenant_prior.py).

A tenant's prior is a ridge per outcome key over the prompt's difficulty features and the shared
examples' estimate for that key, so that its labels decide how far the shared examples speak for
its domain. On some domains they mislead even so: with the shared estimate as an input, the
prior of a tenant holding 400 CRUXEval prompts routes 0.010 APGR worse than without it, while on
competition math the input is worth 0.011 (docs/routing-quality.md, "Which prior, chosen on the
gain"). So each fit chooses, on the tenant's own labels, the form whose cross-fitted prior
predicts better.

The choice is made on the gain, not on each model's outcome: routing ranks prompts by how much
one model gains over another, and the shared estimate moves both models' levels together.
Chosen per model on its own outcome, the choice split by model and changed nothing. So it needs
prompts labelled for two models or more (a judge's verdict labels both answers, and so can
feedback); a tenant with fewer than `MIN_PAIRED` of them keeps the shared input.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .difficulty import CLIP_SD, ridge_solve

FOLDS = 5  # the prior a left-out example is scored against is fitted without its fold
# the two forms' errors differ by a few thousandths, with a standard error of about one
# thousandth at 300 prompts: below a hundred the choice would be a coin toss
MIN_PAIRED = 100


@dataclass(frozen=True)
class KeyRows:
    """One outcome key's rows of the tenant's examples, the shared estimate there and the outcome."""

    rows: np.ndarray
    base: np.ndarray
    y: np.ndarray

    @property
    def base_mean(self) -> float:
        return float(self.base.mean())

    @property
    def base_scale(self) -> float:
        return max(float(self.base.std()), 1e-9)

    def shared_column(self, shared_input: bool) -> np.ndarray:
        """The standardised shared estimate; zeros without the shared input (the ridge gives a
        zero column no weight, so the prior keeps one shape)."""
        if not shared_input:
            return np.zeros(len(self.base))
        out: np.ndarray = (self.base - self.base_mean) / self.base_scale
        return out


@dataclass(frozen=True)
class FormChoice:
    shared_input: bool
    paired: int  # prompts labelled for two models or more
    # mean squared error of the gain with the shared input minus without it (positive: without
    # does better); 0.0 when too few prompts are paired to choose
    margin: float
    # per key, the chosen form's cross-fitted prior on its rows (empty when nothing was chosen):
    # the strength's leave-one-out scores against it
    held_out: Mapping[str, np.ndarray] = field(default_factory=dict)


def cross_fitted(z: np.ndarray, clipped: np.ndarray, b: np.ndarray, y: np.ndarray, ridge: float) -> np.ndarray:
    """Each row's prior from a ridge fitted without its fold, as `KeyPrior.predict` computes it."""
    folds = np.arange(len(y)) % FOLDS
    out = np.empty(len(y))
    for f in range(FOLDS):
        fit, held = folds != f, folds == f
        w = ridge_solve(np.column_stack([z[fit], b[fit]]), y[fit], np.ones(int(fit.sum())), ridge)
        out[held] = np.column_stack([clipped[held], np.clip(b[held], -CLIP_SD, CLIP_SD)]) @ w
    return np.clip(out, 0.01, 0.99)


def choose_form(
    prompt_of: Sequence[Hashable], keys: Mapping[str, KeyRows], z: np.ndarray, clipped: np.ndarray, ridge: float
) -> FormChoice:
    """`prompt_of[i]`: which prompt example i is (the same prompt labelled for another model is
    another example): its text, or its vector for tenants who store no text. Each prompt's error
    is its models' cross-fitted priors' errors around their mean, so only the differences
    between its models count: for two, half the squared error of the gain. The form with the
    smaller mean error over the paired prompts is taken."""
    groups: dict[Hashable, int] = {}
    prompts = np.array([groups.setdefault(p, len(groups)) for p in prompt_of], dtype=np.int64)
    n = len(groups)
    labelled = {key: np.bincount(prompts[k.rows], minlength=n) for key, k in keys.items()}
    paired = sum((count > 0).astype(np.int64) for count in labelled.values()) >= 2
    if int(np.sum(paired)) < MIN_PAIRED:  # decided before any fit: most tenants have no pairs
        return FormChoice(True, int(np.sum(paired)), 0.0)
    held_out: dict[bool, dict[str, np.ndarray]] = {True: {}, False: {}}
    residual = {form: np.full((n, len(keys)), np.nan) for form in (True, False)}
    for j, (key, k) in enumerate(keys.items()):
        at, count = prompts[k.rows], labelled[key]
        for form in (True, False):
            held_out[form][key] = cross_fitted(z[k.rows], clipped[k.rows], k.shared_column(form), k.y, ridge)
            mean_miss = np.bincount(at, held_out[form][key] - k.y, minlength=n)
            residual[form][count > 0, j] = mean_miss[count > 0] / count[count > 0]

    def errors(r: np.ndarray) -> np.ndarray:
        around = r[paired] - np.nanmean(r[paired], axis=1, keepdims=True)
        out: np.ndarray = np.nansum(around * around, axis=1)
        return out

    margin = float((errors(residual[True]) - errors(residual[False])).mean())
    return FormChoice(margin <= 0.0, int(np.sum(paired)), margin, held_out[margin <= 0.0])
