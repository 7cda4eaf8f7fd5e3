"""A tenant's own prior: what the estimate from its own neighbours is shrunk toward.

Without one, a tenant's own neighbours are shrunk toward the shared estimate with a fifth of one
example's weight (`PredictorParams.tenant_strength`): the shared examples may be of another domain.
With enough labels, a tenant gets a prior fitted on them, per outcome key: a ridge regression over
the prompt's difficulty features (difficulty.py) and the shared estimate for that key, so its
labels decide how far the shared examples speak for its domain (or over the features alone, where
its prompts labelled for several models show the shared estimate misleads: prior_form.py). Its
estimate is shrunk toward it as strongly as the shared one is toward the shipped prior
(`tenant_prior_strength`), as a router trained on its rows alone would be, unless leave-one-out
over its examples shows its neighbours do significantly better with less (a mix of tasks, which
neighbours tell apart and a linear prior cannot). It lifts competition math by 0.02-0.035 and open-ended chat by 0.01 at 300 rows and more
(docs/routing-quality.md, "A tenant's own prior").

Fitting reads the tenant's examples and vectors from the index and makes one shared search per
example, so it never runs on a decision: a decision uses the last fit, and a missing or stale one
is refitted in the background (`TenantPriors.get`). The same fit chooses the space the tenant's
own neighbours are searched in (tenant_space.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from ..examples.labelled import LabelledExample
from . import tenant_space
from .difficulty import CLIP_SD, clipped_row, feature_values, features, ridge_solve, standardise
from .predictor import PredictorParams
from .prior_form import KeyRows, choose_form, cross_fitted
from .tenant_space import TenantSpace, examples_fingerprint, fit_tenant_space

log = logging.getLogger(__name__)

# ten labels per coefficient (the usual rule for a regression's sample size): below it a ridge
# over a dozen coefficients overrides a tenant's own neighbours with noise (on a ten-task mix,
# 100 labels per model with the prior scored 0.605 against 0.662 without; docs/routing-quality.md)
MIN_EXAMPLES = 120
# the shared estimate for each of the tenant's examples is a search: cap the examples read
MAX_EXAMPLES = 2000
# How strongly the tenant's neighbours are shrunk toward its prior is chosen per outcome key, by
# leave-one-out over the tenant's own examples, among these strengths and the shared estimate
# (tenant_strength): on a ten-task mix the tenant's neighbours know its tasks better than any
# linear prior, on one domain the prior carries what few neighbours cannot. Never stronger than
# the default: a stronger prior (80) won on squared error on CRUXEval and lost 0.015 APGR there,
# because the error rewards a smooth estimate and routing ranks by the neighbours' detail
# (docs/routing-quality.md, "Choosing the shrinkage by leave-one-out").
PRIOR_STRENGTHS = (5.0, 20.0)
# standard errors by which another choice must beat the default's leave-one-out error: with the
# smallest error alone, judge noise made the choice by chance and cost 0.02-0.03 APGR
_SIGNIFICANCE = 2.0
_YIELD_EVERY = 8  # searches between two yields to the event loop (~1 ms of the local index's time)


class OwnExamples(Protocol):
    """An index that lists one tenant's own examples with their vectors (LocalIndex, WeaviateIndex)."""

    async def own_examples(self, tenant: str, *, limit: int) -> tuple[list[LabelledExample], np.ndarray]: ...


# the shared estimate of one outcome key for one example (vector, text, key), as the router makes it
SharedEstimate = Callable[[np.ndarray, str, str], Awaitable[float]]


@dataclass(frozen=True)
class KeyPrior:
    weights: tuple[float, ...]
    base_mean: float
    base_scale: float
    strength: float

    def predict(self, z: Sequence[float], base: float) -> float:
        """`z`: the prompt's clipped standardised features; `base`: its shared estimate."""
        b = min(CLIP_SD, max(-CLIP_SD, (base - self.base_mean) / self.base_scale))
        value = sum(x * c for x, c in zip([*z, b], self.weights, strict=True))
        return min(0.99, max(0.01, value))


@dataclass(frozen=True)
class TenantPrior:
    """Per outcome key: weights over [1, the prompt's standardised features, the standardised
    shared estimate], the shared estimate's mean and spread over the tenant's examples, and the
    strength the tenant's neighbours are shrunk toward the prior with. A key whose own neighbours
    did better toward the shared estimate in leave-one-out has no entry (`declined` names it)."""

    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: Mapping[str, KeyPrior]
    examples: int
    declined: tuple[str, ...] = ()
    # the tenant's own vector space, where its neighbours are searched when leave-one-out chose it
    space: TenantSpace | None = None
    # the examples the space was chosen on (`examples_fingerprint`): unchanged, the next fit keeps it
    space_examples: int | None = None
    # whether the shared estimate is one of the prior's inputs (prior_form.py); without it, its weight is 0
    shared_input: bool = True

    def targets(
        self, text: str, label_keys: Sequence[Sequence[str]], shared: Sequence[float]
    ) -> list[tuple[float, float] | None]:
        """Per model, (prior, strength) of its most specific key the tenant has a prior for (None:
        none; its neighbours are shrunk toward the shared estimate)."""
        z = self._standardised(text)
        out: list[tuple[float, float] | None] = []
        for keys, base in zip(label_keys, shared, strict=True):
            fitted = next((self.weights[k] for k in keys if k in self.weights), None)
            out.append(None if fitted is None else (fitted.predict(z, base), fitted.strength))
        return out

    def target(self, text: str, key: str, shared: float, params: PredictorParams) -> tuple[float, float]:
        """(target, strength) a neighbour estimate of outcome `key` is shrunk toward for `text`."""
        mine = self.targets(text, [[key]], [shared])[0]
        return mine if mine is not None else (shared, params.tenant_strength)

    def _standardised(self, text: str) -> list[float]:
        return clipped_row(feature_values(text), self.mean, self.scale)


def fit_tenant_prior(
    texts: Sequence[str],
    outcomes: Sequence[Mapping[str, float]],
    shared: Sequence[Mapping[str, float]],
    *,
    vectors: np.ndarray | None = None,
    params: PredictorParams = PredictorParams(),
    min_examples: int = MIN_EXAMPLES,
    ridge: float = 1.0,
) -> TenantPrior | None:
    """Ridge per key on the rows that carry it; `shared[i][key]` is the shared estimate of that
    key for row i. Keys with fewer than `min_examples` rows are left out; None if all are.

    With the examples' `vectors`, each key's shrinkage is chosen by leave-one-out: every example
    is estimated from the tenant's other examples as a decision would (its `own_k` nearest, shrunk
    toward a prior fitted without its fold, or toward its shared estimate), and the default
    (`tenant_prior_strength`) gives way only to a choice with a significantly smaller squared
    error (`_LeaveOneOut.best_strength`). Without them the prior is used at the default."""
    counts: dict[str, int] = {}
    for row in outcomes:
        for key in row:
            counts[key] = counts.get(key, 0) + 1
    keys = sorted(k for k, n in counts.items() if n >= min_examples)
    if not keys:
        return None
    x = np.stack([features(t) for t in texts])
    ones = np.ones(len(texts))
    mean, scale = standardise(x, ones)
    z = (x - mean) / scale  # clipped only when predicting, as DifficultyModel
    clipped = np.clip(z, -CLIP_SD, CLIP_SD)  # the bias column is 1 and stays so
    nearest = _LeaveOneOut(vectors, params) if vectors is not None and len(vectors) == len(texts) else None
    key_rows: dict[str, KeyRows] = {}
    for key in keys:
        rows = np.array([i for i, row in enumerate(outcomes) if key in row])
        key_rows[key] = KeyRows(
            rows, np.array([shared[i][key] for i in rows]), np.array([outcomes[i][key] for i in rows])
        )
    # a prompt is known by its vector where there is one (tenants may store no text), as below
    prompts = [v.tobytes() for v in vectors] if vectors is not None and nearest is not None else list(texts)
    form = choose_form(prompts, key_rows, z, clipped, ridge)
    weights: dict[str, KeyPrior] = {}
    declined: list[str] = []
    for key, k in key_rows.items():
        b = k.shared_column(form.shared_input)
        w = ridge_solve(np.column_stack([z[k.rows], b]), k.y, ones[k.rows], ridge)
        strength = params.tenant_prior_strength
        if nearest is not None:
            held_out = (
                form.held_out[key] if key in form.held_out else cross_fitted(z[k.rows], clipped[k.rows], b, k.y, ridge)
            )
            chosen = nearest.best_strength(key, outcomes, k.rows, k.y, k.base, held_out)
            if chosen is None:
                declined.append(key)
                continue
            strength = chosen
        weights[key] = KeyPrior(tuple(float(v) for v in w), k.base_mean, k.base_scale, strength)
    mean_, scale_ = tuple(float(v) for v in mean), tuple(float(v) for v in scale)
    return TenantPrior(mean_, scale_, weights, len(texts), tuple(declined), shared_input=form.shared_input)


class _LeaveOneOut:
    """Each example's `own_k` nearest among the tenant's other prompts (the same prompt labelled
    for another model, or twice, is not another prompt), weighted as the predictor weighs them.
    A prompt is known by its vector, not its text: tenants who store no prompt text have examples
    with empty content and the vectors of their prompts."""

    def __init__(self, vectors: np.ndarray, params: PredictorParams) -> None:
        self.params = params
        matrix = np.ascontiguousarray(vectors, dtype=np.float32)
        n = len(matrix)
        group: dict[bytes, int] = {}
        ids = np.array([group.setdefault(row.tobytes(), len(group)) for row in matrix])
        sims = matrix @ matrix.T
        sims[ids[:, None] == ids[None, :]] = -np.inf
        k = max(1, min(params.own_k, n - 1))
        self.top = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < n else np.tile(np.arange(n), (n, 1))
        self.w = (
            np.maximum(np.take_along_axis(sims, self.top, axis=1), 0.0).astype(np.float64) ** params.similarity_power
        )

    def best_strength(
        self,
        key: str,
        outcomes: Sequence[Mapping[str, float]],
        rows: np.ndarray,
        y: np.ndarray,
        shared: np.ndarray,
        prior: np.ndarray,
    ) -> float | None:
        """The prior strength `key` is shrunk with; None for the shared estimate as the target
        (at `tenant_strength`). The default (`tenant_prior_strength`) stands unless another choice
        has a smaller leave-one-out squared error by more than `_SIGNIFICANCE` standard errors of
        the paired difference: with noisy labels the smallest error alone picks by chance."""
        has = np.array([key in row for row in outcomes], dtype=np.float64)
        value = np.array([row.get(key, 0.0) for row in outcomes])
        w = self.w[rows] * has[self.top[rows]]
        mass, weighted = w.sum(axis=1), (w * value[self.top[rows]]).sum(axis=1)

        def errors(target: np.ndarray, strength: float) -> np.ndarray:
            out: np.ndarray = ((weighted + strength * target) / (mass + strength) - y) ** 2
            return out

        default = self.params.tenant_prior_strength
        candidates: dict[float | None, np.ndarray] = {s: errors(prior, s) for s in {*PRIOR_STRENGTHS, default}}
        candidates[None] = errors(shared, self.params.tenant_strength)
        base = candidates[default]
        best: float | None = default
        best_gain = 0.0
        for strength, e in candidates.items():
            diff = base - e
            gain = float(diff.mean())
            se = float(diff.std()) / np.sqrt(len(diff))
            if gain > _SIGNIFICANCE * se and gain > best_gain:
                best, best_gain = strength, gain
        return best


@dataclass(frozen=True)
class _Fitted:
    prior: TenantPrior | None
    at: float


class TenantPriors:
    """Each tenant's prior, refitted in the background every `refresh_s` seconds while it routes;
    at most `max_tenants` kept, `max_spaces` with a space of their own holding `max_space_bytes`
    together (least recently used go first; a dropped space is chosen again at the next fit)."""

    def __init__(
        self,
        source: OwnExamples,
        *,
        refresh_s: float = 300.0,
        min_examples: int = MIN_EXAMPLES,
        max_examples: int = MAX_EXAMPLES,
        max_space_examples: int = tenant_space.MAX_EXAMPLES,
        max_tenants: int = 1024,
        max_spaces: int = tenant_space.MAX_SPACES,
        max_space_bytes: int = tenant_space.MAX_SPACE_BYTES,
        params: PredictorParams = PredictorParams(),
        clock: Callable[[], float] = time.monotonic,
        on_fit: Callable[[str], None] | None = None,
        on_space: Callable[[str], None] | None = None,
        on_held: Callable[[int, int, int], None] | None = None,
    ) -> None:
        self.source = source
        # for /metrics: each fit's outcome (fitted, too_few_labels or failed), each fitted prior's
        # space (own or shared), and after each the spaces held, their bytes and how many were dropped
        self.on_fit, self.on_space = on_fit or (lambda _: None), on_space or (lambda _: None)
        self.on_held = on_held or (lambda held, held_bytes, dropped: None)
        self.refresh_s = refresh_s
        self.params = params  # the predictor's: the leave-one-out choice imitates its decisions
        self.min_examples, self.max_examples = min_examples, max_examples
        self.max_space_examples = max_space_examples  # 0: no tenant gets a space of its own
        self.max_tenants, self.max_spaces, self.max_space_bytes = max_tenants, max_spaces, max_space_bytes
        self._clock = clock
        self._fitted: OrderedDict[str, _Fitted] = OrderedDict()
        self._running: dict[str, asyncio.Task[None]] = {}

    def peek(self, tenant: str) -> TenantPrior | None:
        """The tenant's prior as last fitted, without starting a fit (a tenant that has no
        examples must not cost a fit per refresh interval just for asking)."""
        fitted = self._fitted.get(tenant)
        return fitted.prior if fitted is not None else None

    def get(self, tenant: str, shared: SharedEstimate) -> TenantPrior | None:
        """The tenant's prior as last fitted; never waits. A missing or stale one is refitted in
        the background (when an event loop runs), and this decision uses what there is."""
        fitted = self._fitted.get(tenant)
        if fitted is not None:
            self._fitted.move_to_end(tenant)
        if (fitted is None or self._clock() - fitted.at >= self.refresh_s) and tenant not in self._running:
            self._start(tenant, shared)
        return fitted.prior if fitted is not None else None

    def _start(self, tenant: str, shared: SharedEstimate) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = loop.create_task(self._refit_quietly(tenant, shared))
        self._running[tenant] = task
        task.add_done_callback(lambda _: self._running.pop(tenant, None))

    async def _refit_quietly(self, tenant: str, shared: SharedEstimate) -> None:
        try:
            await self.refresh(tenant, shared)
        except Exception as exc:  # the index being down must not fail routing: keep the last prior
            log.warning("could not fit tenant %s's prior: %s", tenant, type(exc).__name__)
            self.on_fit("failed")
            previous = self._fitted.get(tenant)
            self._keep(tenant, _Fitted(previous.prior if previous else None, self._clock()))

    async def refresh(self, tenant: str, shared: SharedEstimate) -> TenantPrior | None:
        """Fit the tenant's prior, and choose its space, now from its examples in the index."""
        examples, vectors = await self.source.own_examples(
            tenant, limit=max(self.max_examples, self.max_space_examples)
        )
        # the prior reads the latest max_examples (each costs a shared search); the space all read
        rows = list(range(max(0, len(examples) - self.max_examples), len(examples)))
        estimates = []
        for n, i in enumerate(rows, start=1):
            estimates.append({key: await shared(vectors[i], examples[i].content, key) for key in examples[i].outcomes})
            if n % _YIELD_EVERY == 0:
                # an in-process search never yields: decisions must not wait for 2,000 of them
                await asyncio.sleep(0)
        previous = self._fitted.get(tenant)
        prior = await asyncio.to_thread(
            self._fit, examples, vectors, rows, estimates, previous.prior if previous is not None else None
        )
        self._keep(tenant, _Fitted(prior, self._clock()))
        if prior is not None:
            chosen = ", ".join(f"{k} at {p.strength:g}" for k, p in prior.weights.items())
            log.info(
                "fitted tenant %s's prior on %d examples (%s%s; own neighbours do better without it: %s); %s",
                tenant,
                prior.examples,
                "" if prior.shared_input else "without the shared estimate as an input; ",
                chosen or "none",
                ", ".join(prior.declined) or "none",
                f"its own space, {prior.space.gain:.4f} less squared error" if prior.space else "the shared space",
            )
            self.on_space("own" if prior.space is not None else "shared")
        self.on_fit("fitted" if prior is not None else "too_few_labels")
        return prior

    def _fit(
        self,
        examples: Sequence[LabelledExample],
        vectors: np.ndarray,
        rows: Sequence[int],
        estimates: Sequence[Mapping[str, float]],
        previous: TenantPrior | None,
    ) -> TenantPrior | None:
        """The prior on `rows`, then the space on every example (in a worker thread). Unchanged
        examples keep the last space: choosing takes seconds, and a quiet tenant refits often."""
        prior = fit_tenant_prior(
            [examples[i].content for i in rows],
            [examples[i].outcomes for i in rows],
            estimates,
            vectors=vectors[rows],
            params=self.params,
            min_examples=self.min_examples,
        )
        if prior is None or self.max_space_examples <= 0:
            return prior
        first = max(0, len(examples) - self.max_space_examples)  # the space holds the latest
        seen = examples_fingerprint(examples[first:])
        if previous is not None and previous.space_examples == seen:
            return replace(prior, space=previous.space, space_examples=seen)
        scored = [(i - first, est) for i, est in zip(rows, estimates, strict=True) if i >= first]
        targets = [
            {k: prior.target(examples[i + first].content, k, est[k], self.params) for k in est} for i, est in scored
        ]
        space = fit_tenant_space(examples[first:], vectors[first:], [i for i, _ in scored], targets, self.params)
        return replace(prior, space=space, space_examples=seen)

    def _keep(self, tenant: str, fitted: _Fitted) -> None:
        self._fitted[tenant] = fitted
        self._fitted.move_to_end(tenant)
        while len(self._fitted) > self.max_tenants:
            self._fitted.popitem(last=False)
        holding = [(t, p, f.at) for t, f in self._fitted.items() if (p := f.prior) is not None and p.space is not None]
        sizes = [p.space.nbytes for _, p, _ in holding if p.space is not None]
        drop = tenant_space.spaces_over_budget(sizes, self.max_spaces, self.max_space_bytes)
        for old, p, at in holding[:drop]:
            self._fitted[old] = _Fitted(replace(p, space=None, space_examples=None), at)
        self.on_held(len(sizes) - drop, sum(sizes[drop:]), drop)

    async def close(self) -> None:
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
