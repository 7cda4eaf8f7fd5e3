"""A tenant's own prior: what the estimate from its own neighbours is shrunk toward.

The estimate from a tenant's own labelled neighbours used to be shrunk toward the shared estimate
with a fifth of one example's weight (`PredictorParams.tenant_strength`), because the shared
examples may be of another domain entirely. With enough labels of its own, a tenant gets a prior
fitted on them instead, per outcome key: a ridge regression over the prompt's difficulty features
(difficulty.py) and the shared estimate for that key, so the tenant's labels decide how far the
shared examples speak for its domain. The tenant's estimate is shrunk toward it as strongly as
the shared estimate is toward the shipped prior (`tenant_prior_strength` = `prior_strength`),
which is what a router trained on the tenant's rows alone does. On held-out learning curves it
lifts competition math by 0.02-0.035 and open-ended chat by 0.01 at 300 rows and more, and costs a
ten-task mix at 100 rows (docs/routing-quality.md, "A tenant's own prior").

Fitting reads the tenant's examples and their vectors from the index and makes one shared search
per example, so it never runs on a decision: a decision uses the prior fitted last, and a
missing or stale one is refitted in the background (`TenantPriors.get`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..examples.labelled import LabelledExample
from .difficulty import CLIP_SD, clipped_row, feature_values, features, ridge_solve, standardise

log = logging.getLogger(__name__)

# ten labels per coefficient (the usual rule for a regression's sample size): below it a ridge
# over a dozen coefficients overrides a tenant's own neighbours with noise (on a ten-task mix,
# 100 labels per model with the prior scored 0.605 against 0.662 without; docs/routing-quality.md)
MIN_EXAMPLES = 120
# the shared estimate for each of the tenant's examples is a search: cap the examples read
MAX_EXAMPLES = 2000
_YIELD_EVERY = 8  # searches between two yields to the event loop (~1 ms of the local index's time)


class OwnExamples(Protocol):
    """An index that lists one tenant's own examples with their vectors (LocalIndex, WeaviateIndex)."""

    async def own_examples(self, tenant: str, *, limit: int) -> tuple[list[LabelledExample], np.ndarray]: ...


# the shared estimate of one outcome key for one example (vector, text, key), as the router makes it
SharedEstimate = Callable[[np.ndarray, str, str], Awaitable[float]]


@dataclass(frozen=True)
class TenantPrior:
    """Per outcome key: weights over [1, the prompt's standardised features, the standardised
    shared estimate], and the shared estimate's mean and spread over the tenant's examples."""

    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: Mapping[str, tuple[tuple[float, ...], float, float]]
    examples: int

    def priors(self, text: str, label_keys: Sequence[Sequence[str]], shared: Sequence[float]) -> list[float | None]:
        """Per model, the prior of its most specific key the tenant has labels for (None: none)."""
        z = self._standardised(text)
        out: list[float | None] = []
        for keys, base in zip(label_keys, shared, strict=True):
            fitted = next((self.weights[k] for k in keys if k in self.weights), None)
            if fitted is None:
                out.append(None)
                continue
            w, b_mean, b_scale = fitted
            b = min(CLIP_SD, max(-CLIP_SD, (base - b_mean) / b_scale))
            value = sum(x * c for x, c in zip([*z, b], w, strict=True))
            out.append(min(0.99, max(0.01, value)))
        return out

    def _standardised(self, text: str) -> list[float]:
        return clipped_row(feature_values(text), self.mean, self.scale)


def fit_tenant_prior(
    texts: Sequence[str],
    outcomes: Sequence[Mapping[str, float]],
    shared: Sequence[Mapping[str, float]],
    *,
    min_examples: int = MIN_EXAMPLES,
    ridge: float = 1.0,
) -> TenantPrior | None:
    """Ridge per key on the rows that carry it; `shared[i][key]` is the shared estimate of that
    key for row i. Keys with fewer than `min_examples` rows are left out; None if all are."""
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
    weights: dict[str, tuple[tuple[float, ...], float, float]] = {}
    for key in keys:
        rows = [i for i, row in enumerate(outcomes) if key in row]
        base = np.array([shared[i][key] for i in rows])
        b_mean, b_scale = float(base.mean()), max(float(base.std()), 1e-9)
        a = np.column_stack([z[rows], (base - b_mean) / b_scale])
        y = np.array([outcomes[i][key] for i in rows])
        w = ridge_solve(a, y, ones[rows], ridge)
        weights[key] = (tuple(float(v) for v in w), b_mean, b_scale)
    return TenantPrior(tuple(float(v) for v in mean), tuple(float(v) for v in scale), weights, len(texts))


@dataclass(frozen=True)
class _Fitted:
    prior: TenantPrior | None
    at: float


class TenantPriors:
    """Each tenant's prior, fitted in the background and refitted every `refresh_s` seconds while
    the tenant routes; at most `max_tenants` are kept (least recently used go first)."""

    def __init__(
        self,
        source: OwnExamples,
        *,
        refresh_s: float = 300.0,
        min_examples: int = MIN_EXAMPLES,
        max_examples: int = MAX_EXAMPLES,
        max_tenants: int = 1024,
        clock: Callable[[], float] = time.monotonic,
        on_fit: Callable[[str], None] | None = None,
    ) -> None:
        self.source = source
        self.on_fit = on_fit  # told each fit's outcome: fitted, too_few_labels or failed (for /metrics)
        self.refresh_s = refresh_s
        self.min_examples = min_examples
        self.max_examples = max_examples
        self.max_tenants = max_tenants
        self._clock = clock
        self._fitted: OrderedDict[str, _Fitted] = OrderedDict()
        self._running: dict[str, asyncio.Task[None]] = {}

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
            self._told("failed")
            previous = self._fitted.get(tenant)
            self._keep(tenant, _Fitted(previous.prior if previous else None, self._clock()))

    async def refresh(self, tenant: str, shared: SharedEstimate) -> TenantPrior | None:
        """Fit the tenant's prior now from its examples in the index."""
        examples, vectors = await self.source.own_examples(tenant, limit=self.max_examples)
        estimates = []
        for n, (ex, vector) in enumerate(zip(examples, vectors, strict=True), start=1):
            estimates.append({key: await shared(vector, ex.content, key) for key in ex.outcomes})
            if n % _YIELD_EVERY == 0:
                # an in-process search never gives the event loop back: decisions must not wait
                # for two thousand of them
                await asyncio.sleep(0)
        prior = await asyncio.to_thread(
            fit_tenant_prior,
            [ex.content for ex in examples],
            [ex.outcomes for ex in examples],
            estimates,
            min_examples=self.min_examples,
        )
        self._keep(tenant, _Fitted(prior, self._clock()))
        if prior is not None:
            log.info("fitted tenant %s's prior on %d examples (%s)", tenant, prior.examples, ", ".join(prior.weights))
        self._told("fitted" if prior is not None else "too_few_labels")
        return prior

    def _told(self, outcome: str) -> None:
        if self.on_fit is not None:
            self.on_fit(outcome)

    def _keep(self, tenant: str, fitted: _Fitted) -> None:
        self._fitted[tenant] = fitted
        self._fitted.move_to_end(tenant)
        while len(self._fitted) > self.max_tenants:
            self._fitted.popitem(last=False)

    async def close(self) -> None:
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
