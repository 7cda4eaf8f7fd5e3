"""Routing quality, measured as the routing literature does (RouteLLM; the protocol is in docs/routing-quality.md).

Train rows become labelled examples in a LocalIndex through the production encoder; each test
prompt gets a score (predicted quality of the strong model minus the weak one), and the
strong-call share is swept from 0 to 100%.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .encoders.base import Encoder
from .examples.labelled import (
    LabelledExample,
    LabelledFileError,
    Neighbour,
    count_prompts,
    outcome_scale,
    prompt_column_in,
    read_labelled_csv,
)
from .index.local import LocalIndex
from .routing.difficulty import DifficultyModel
from .routing.predictor import PredictorParams, estimate, outcome_priors, predict_qualities
from .routing.tenant_prior import TenantPrior, TenantPriors

log = logging.getLogger(__name__)

STEPS = 101


@dataclass
class Dataset:
    texts: list[str]
    strong: np.ndarray
    weak: np.ndarray


def read_scored(
    path: Path, columns: Sequence[str], rename: dict[str, str] | None = None, *, prompt_column: str = "prompt"
) -> list[LabelledExample]:
    """A labelled file to measure with. Its outcomes may be scores on a scale of their own (a
    judge's 1..10, say): they are mapped linearly onto 0..1 by the file's lowest and highest
    score. apgr, cpt50 and cpt80 do not change under a linear map; weak_acc, strong_acc and
    strong_calls_at_95 (95% of the strong model's score) are read on the mapped scale.
    `prompt_column` names the prompt's column; a file without it reads `prompt`."""
    prompt_column = prompt_column_in(path, prompt_column)
    scale = outcome_scale(path, columns, prompt_column=prompt_column)
    if scale is not None:
        log.warning("%s: outcomes span %g..%g, not 0..1; mapped linearly onto 0..1", path, *scale)
    return list(
        read_labelled_csv(path, prompt_column=prompt_column, model_columns=columns, rename=rename, score_range=scale)
    )


def load_dataset(paths: Sequence[Path], strong: str, weak: str, *, prompt_column: str = "prompt") -> Dataset:
    texts: list[str] = []
    s: list[float] = []
    w: list[float] = []
    for path in sorted(paths, key=str):
        column = prompt_column_in(Path(path), prompt_column)
        rows = read_scored(Path(path), [strong, weak], prompt_column=column)
        kept = [ex for ex in rows if strong in ex.outcomes and weak in ex.outcomes]
        total, prompts = count_prompts(Path(path), prompt_column=column)
        if prompts < total:
            log.warning("%s: %d of %d rows have no prompt; left out", path, total - prompts, total)
        if len(kept) < prompts:
            log.warning(
                "%s: %d of %d rows lack the strong or the weak outcome; left out", path, prompts - len(kept), prompts
            )
        for ex in kept:
            texts.append(ex.content)
            s.append(ex.outcomes[strong])
            w.append(ex.outcomes[weak])
    if not texts:
        raise LabelledFileError("no rows with both the strong and the weak outcome")
    return Dataset(texts, np.asarray(s, dtype=np.float64), np.asarray(w, dtype=np.float64))


def split(n: int, train_frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    cut = round(n * train_frac)
    return order[:cut], order[cut:]


def curve(scores: np.ndarray, strong: np.ndarray, weak: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """accuracy(p) for p = 0, 0.01, ..., 1: the top-p share by score goes to the strong model."""
    n = len(scores)
    # stable order: ties keep dataset order, so the curve is deterministic
    order = np.argsort(-scores, kind="stable")
    gain = (strong - weak)[order]
    cum = np.concatenate([[0.0], np.cumsum(gain)])
    shares = np.linspace(0.0, 1.0, STEPS)
    ks = np.rint(shares * n).astype(int)
    acc = (weak.sum() + cum[ks]) / n
    return shares, acc


def metrics(scores: np.ndarray, strong: np.ndarray, weak: np.ndarray) -> dict[str, float | None]:
    shares, acc = curve(scores, strong, weak)
    weak_acc, strong_acc = float(weak.mean()), float(strong.mean())
    span = strong_acc - weak_acc
    pgr = (acc - weak_acc) / span if span != 0 else np.zeros_like(acc)
    apgr = float(np.sum((pgr[1:] + pgr[:-1]) / 2 * np.diff(shares)))

    def first(mask: np.ndarray) -> float | None:
        hits = np.flatnonzero(mask)
        return round(float(shares[hits[0]]), 2) if len(hits) else None

    return {
        "apgr": round(apgr, 4),
        "cpt50": first(pgr >= 0.5),
        "cpt80": first(pgr >= 0.8),
        "strong_calls_at_95": first(acc >= 0.95 * strong_acc - 1e-12),
        "weak_acc": round(weak_acc, 4),
        "strong_acc": round(strong_acc, 4),
    }


class GainScorer:
    """Scores prompts with the production path: encoder -> LocalIndex -> predictor.

    `strong_keys` / `weak_keys` are the outcome keys that speak for each side, most specific
    first, as `ModelSpec.label_keys` gives them to the router (a model's own key, then its
    tier's). Searches are made as `tenant`, so a tenant's own examples are visible."""

    STRONG, WEAK = "strong", "weak"

    def __init__(
        self,
        encoder: Encoder,
        params: PredictorParams,
        *,
        strong_keys: Sequence[str] = ("strong",),
        weak_keys: Sequence[str] = ("weak",),
        tenant: str | None = None,
        use_difficulty: bool = True,
    ) -> None:
        self.use_difficulty = use_difficulty
        self.encoder = encoder
        self.params = params
        self.index = LocalIndex(encoder.dim)
        self.priors: dict[str, float] = {}
        self.strong_keys = tuple(strong_keys)
        self.weak_keys = tuple(weak_keys)
        self.tenant = tenant
        self.difficulty: DifficultyModel | None = None
        self.tenant_prior: TenantPrior | None = None

    def fit(self, texts: Sequence[str], strong: np.ndarray, weak: np.ndarray) -> None:
        s_key, w_key = self.strong_keys[-1], self.weak_keys[-1]
        examples = [
            LabelledExample(
                content=t, outcomes={s_key: float(s), w_key: float(w)}, source="evaluation", id=f"train-{i}"
            )
            for i, (t, s, w) in enumerate(zip(texts, strong, weak, strict=True))
        ]
        self.add(examples, self.encoder.encode(list(texts)))
        if self.use_difficulty:
            self.difficulty = DifficultyModel.fit(list(texts), [ex.outcomes for ex in examples])

    def add(self, examples: Sequence[LabelledExample], vectors: np.ndarray) -> None:
        """Index labelled examples whose vectors are known; the priors come from them."""
        self.index.upsert_sync(examples, vectors)
        self.priors = outcome_priors([ex.outcomes for ex in examples])

    def prior(self, keys: Sequence[str], per_prompt: dict[str, float]) -> float:
        """As the router: the prompt-difficulty prior of the model's tier, else the mean outcome."""
        for source in (per_prompt, self.priors):
            hit = next((source[k] for k in reversed(keys) if k in source), None)
            if hit is not None:
                return hit
        return 0.5

    async def fit_tenant_prior(self) -> None:
        """As the router (tenant_prior.py): the tenant's prior, fitted on its examples in the index."""
        if self.tenant is not None:
            self.tenant_prior = await TenantPriors(self.index, params=self.params).refresh(
                self.tenant, self.shared_estimate
            )

    async def shared_estimate(self, vector: np.ndarray, text: str, key: str) -> float:
        """As Router.shared_estimate: the shared examples' estimate of outcome `key` for a prompt."""
        keys = next((k for k in (self.strong_keys, self.weak_keys) if k[0] == key), (key,))
        per_prompt = self.difficulty.predict(text) if self.difficulty is not None and text else {}
        shared = self.index.search_sync(vector, self.params.k, tenant=None)
        return predict_qualities(shared, [keys], [self.prior(keys, per_prompt)], self.params)[0].quality

    def score(self, text: str) -> float:
        vec = self.encoder.encode([text])[0]
        # as Router.neighbours: the shared examples, and the tenant's own by a second search
        shared = self.index.search_sync(vec, self.params.k, tenant=None)
        space = self.tenant_prior.space if self.tenant_prior is not None else None
        own: Sequence[Neighbour] = []
        if space is not None:
            own = space.search(text, self.params.own_k)
        elif self.tenant:
            own = self.index.search_own_sync(vec, self.params.own_k, tenant=self.tenant)
        keys = [self.strong_keys, self.weak_keys]
        per_prompt = self.difficulty.predict(text) if self.difficulty is not None else {}
        priors = [self.prior(k, per_prompt) for k in keys]
        est = estimate(shared, own, keys, priors, self.params, self.tenant_prior if len(own) else None, text)
        return est[0].quality - est[1].quality

    def score_all(self, texts: Sequence[str]) -> tuple[np.ndarray, list[float]]:
        scores = np.empty(len(texts))
        times = []
        for i, text in enumerate(texts):
            t0 = time.perf_counter()
            scores[i] = self.score(text)
            times.append((time.perf_counter() - t0) * 1000)
        return scores, times


EncoderFactory = Callable[[Sequence[str]], Encoder]
# what to do with a test split's scores and outcomes (the CLI's --plot draws them)
CurveSink = Callable[[np.ndarray, np.ndarray, np.ndarray, str], None]


def evaluate(
    data: Dataset,
    make_encoder: EncoderFactory,
    params: PredictorParams,
    *,
    train_frac: float = 0.5,
    seed: int = 0,
    on_curve: CurveSink | None = None,
) -> dict[str, Any]:
    """The encoder is built from the training texts only (a fitted encoder learns its idf and
    basis from the examples it will index, as production does from its example set)."""
    train, test = split(len(data.texts), train_frac, seed)
    encoder = make_encoder([data.texts[i] for i in train])
    scorer = GainScorer(encoder, params)
    scorer.fit([data.texts[i] for i in train], data.strong[train], data.weak[train])
    scores, times = scorer.score_all([data.texts[i] for i in test])
    result: dict[str, Any] = metrics(scores, data.strong[test], data.weak[test])
    result.update(
        {
            "n_train": len(train),
            "n_test": len(test),
            "decision_ms_p50": round(float(np.percentile(times, 50)), 4),
            "encoder": encoder.name,
            "k": params.k,
        }
    )
    if on_curve is not None:
        on_curve(scores, data.strong[test], data.weak[test], f"{encoder.name}, apgr {result['apgr']}")
    return result


def threshold_for(
    scores: np.ndarray, strong: np.ndarray, weak: np.ndarray, *, strong_share: float | None, quality: float | None
) -> dict[str, float]:
    """The score threshold above which prompts go to the strong model, meeting a target."""
    shares, acc = curve(scores, strong, weak)
    if strong_share is not None:
        p = strong_share
    else:
        assert quality is not None
        target = quality * float(strong.mean())
        hits = np.flatnonzero(acc >= target - 1e-12)
        p = float(shares[hits[0]]) if len(hits) else 1.0
    ordered = np.sort(scores)[::-1]
    k = round(p * len(scores))
    if k <= 0:
        thr = float(ordered[0]) + 1e-9
    elif k >= len(scores):
        thr = float(ordered[-1]) - 1e-9
    else:
        thr = float((ordered[k - 1] + ordered[k]) / 2)
    chosen = scores > thr
    achieved_acc = float(np.where(chosen, strong, weak).mean())
    return {
        "threshold": round(thr, 6),
        "strong_share": round(float(chosen.mean()), 4),
        "accuracy": round(achieved_acc, 4),
        "quality_vs_strong": round(achieved_acc / float(strong.mean()), 4),
    }
