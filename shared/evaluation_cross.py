"""Cross-domain evaluation and learning curves (issue #13; docs/routing-quality.md).

- `cross_domain`: labelled examples from some sources (the shipped starter set, or files) are
  the router's examples; every row of each test file is scored.
- `learning_curve`: each test file is split 50/50 (seeded); the first N rows of the first half
  are added to the examples the way production adds feedback-labelled examples (the
  `FeedbackExamples` pipeline: one example per answered request, owned by the tenant, its
  outcome stored under the id of the catalog model that answered); the second half is scored.

The training side stands for the catalog's tiers: its strong outcome is `tier:frontier` and its
weak outcome `tier:economy` (the starter set is labelled that way already). The test side's
strong and weak columns stand for two catalog models, a frontier-tier and an economy-tier one,
so scoring uses their label keys exactly as the router does: the model's own key, then its
tier's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .cache.memory import MemoryCache
from .catalog import Catalog, ModelSpec
from .config import Settings
from .encoders.base import Encoder
from .evaluation import Dataset, EncoderFactory, GainScorer, load_dataset, metrics, read_scored, split
from .examples.feedback_loop import FeedbackExamples
from .examples.labelled import LabelledExample, prompt_column_in, read_labelled_csv
from .examples.prompt_store import PromptStore
from .routing.difficulty import DifficultyModel, load_default
from .routing.predictor import PredictorParams
from .store.feedback import FeedbackRow, MemoryFeedbackSource

FRONTIER, ECONOMY = "tier:frontier", "tier:economy"
EVAL_TENANT = "evaluation"


@dataclass
class TrainSet:
    examples: list[LabelledExample]
    vectors: np.ndarray
    encoder: Encoder
    difficulty: DifficultyModel | None = None


def load_train(
    paths: Sequence[Path] | None,
    strong: str,
    weak: str,
    make_encoder: EncoderFactory,
    starter: tuple[Path, Encoder] | None,
    *,
    prompt_column: str = "prompt",
) -> TrainSet:
    """`paths` None: the shipped starter examples and the shipped encoder state. Otherwise the
    files' `strong`/`weak` columns (or, for files in the starter format, their tier columns)
    become frontier/economy outcomes, and the encoder is fitted on their texts."""
    if paths is None:
        if starter is None:
            raise ValueError("no training files and no starter set")
        path, encoder = starter
        examples = list(read_labelled_csv(path, source="starter"))
        difficulty = load_default()
    else:
        examples, weights = [], []
        for p in sorted(paths, key=str):
            rows = _tier_examples(Path(p), strong, weak, prompt_column)
            examples.extend(rows)
            weights.extend([1.0 / max(len(rows), 1)] * len(rows))  # every source counts the same
        encoder = make_encoder([ex.content for ex in examples])
        difficulty = DifficultyModel.fit(
            [ex.content for ex in examples], [ex.outcomes for ex in examples], sample_weight=weights
        )
    if not examples:
        raise ValueError("no training examples")
    return TrainSet(examples, encoder.encode([ex.content for ex in examples]), encoder, difficulty)


def _tier_examples(path: Path, strong: str, weak: str, prompt_column: str) -> list[LabelledExample]:
    try:
        rows = read_scored(path, [strong, weak], rename={strong: FRONTIER, weak: ECONOMY}, prompt_column=prompt_column)
    except ValueError:  # no such columns: a file in the starter format, labelled by tier already
        rows = list(read_labelled_csv(path, prompt_column=prompt_column_in(path, prompt_column)))
    return [ex for ex in rows if FRONTIER in ex.outcomes and ECONOMY in ex.outcomes]


def tier_models(catalog: Catalog) -> tuple[ModelSpec, ModelSpec]:
    """The catalog models the test columns stand for: the first enabled frontier and economy ones."""
    frontier = next(m for m in catalog.enabled() if m.tier == "frontier")
    economy = next(m for m in catalog.enabled() if m.tier == "economy")
    return frontier, economy


def _scorer(train: TrainSet, params: PredictorParams, models: tuple[ModelSpec, ModelSpec]) -> GainScorer:
    scorer = GainScorer(
        train.encoder, params, strong_keys=models[0].label_keys, weak_keys=models[1].label_keys, tenant=EVAL_TENANT
    )
    scorer.add(train.examples, train.vectors)
    scorer.difficulty = train.difficulty
    return scorer


def _result(scorer: GainScorer, data: Dataset, rows: np.ndarray) -> dict[str, Any]:
    scores, times = scorer.score_all([data.texts[i] for i in rows])
    out: dict[str, Any] = metrics(scores, data.strong[rows], data.weak[rows])
    out["n_test"] = len(rows)
    out["decision_ms_p50"] = round(float(np.percentile(times, 50)), 4)
    return out


def cross_domain(
    train: TrainSet, test: Path, data: Dataset, params: PredictorParams, models: tuple[ModelSpec, ModelSpec]
) -> dict[str, Any]:
    out = {"test": str(test), **_result(_scorer(train, params, models), data, np.arange(len(data.texts)))}
    out["n_train"] = len(train.examples)
    return out


def parse_learn(values: Sequence[str]) -> list[int | None]:
    """`--learn 0 100 300 all` -> [0, 100, 300, None] (None: the whole first half)."""
    out: list[int | None] = []
    for v in values:
        if v.lower() == "all":
            out.append(None)
        elif v.isdigit():
            out.append(int(v))
        else:
            raise ValueError(f"--learn wants whole numbers or 'all', got {v!r}")
    return out


def learning_curve(
    train: TrainSet,
    test: Path,
    data: Dataset,
    params: PredictorParams,
    models: tuple[ModelSpec, ModelSpec],
    learn: Sequence[int | None],
    *,
    judge_noise: float = 0.0,
    seed: int = 0,
    make_encoder: EncoderFactory | None = None,
    tenant_prior: bool = True,
) -> list[dict[str, Any]]:
    pool, held = split(len(data.texts), 0.5, seed)
    labels = _noisy_labels(data, pool, judge_noise, seed)
    lines = []
    for n in learn:
        rows = pool if n is None else pool[: min(n, len(pool))]
        scorer = _scorer(train, params, models)
        asyncio.run(add_feedback(scorer, data, rows, labels, models, tenant_prior=tenant_prior))
        out = {"test": str(test), "learned": len(rows), "judge_noise": judge_noise, **_result(scorer, data, held)}
        out["n_train"] = len(train.examples)
        if n is None and make_encoder is not None:
            out["in_domain_only_apgr"] = in_domain_only(data, pool, held, params, make_encoder)
        lines.append(out)
    return lines


def _noisy_labels(data: Dataset, pool: np.ndarray, share: float, seed: int) -> dict[str, np.ndarray]:
    """The learned rows' labels, with a share of them flipped (y -> 1 - y) as a wrong judge would."""
    strong, weak = data.strong.copy(), data.weak.copy()
    if share > 0:
        rng = np.random.default_rng(seed + 1)
        cells = [(side, i) for i in pool for side in (0, 1)]
        for j in rng.choice(len(cells), size=round(share * len(cells)), replace=False):
            side, i = cells[j]
            arr = strong if side == 0 else weak
            arr[i] = 1.0 - arr[i]
    return {"strong": strong, "weak": weak}


async def add_feedback(
    scorer: GainScorer,
    data: Dataset,
    rows: np.ndarray,
    labels: dict[str, np.ndarray],
    models: tuple[ModelSpec, ModelSpec],
    *,
    tenant_prior: bool = True,
) -> int:
    """Each learned row is two answered requests (one per model) with feedback on each, run
    through the production feedback -> examples pipeline into the scorer's index; then the
    tenant's prior is fitted on them, as the router does in the background."""

    settings = Settings(feedback_to_examples=True, store_prompt_text=True, store_prompt_text_tenants="*")
    source = MemoryFeedbackSource()
    feeder = FeedbackExamples(
        settings, source, PromptStore(MemoryCache(max_entries=4 * len(rows) + 16), 3600), scorer.index, scorer.encoder
    )
    n = 0
    for i in rows:
        for side, model in (("strong", models[0]), ("weak", models[1])):
            n += 1
            request_id = f"eval-{i}-{side}"
            await feeder.remember(request_id, EVAL_TENANT, data.texts[i], None)
            source.add(FeedbackRow(n, request_id, EVAL_TENANT, float(labels[side][i]), model.id))
    result = await feeder.process(limit=max(1, n))
    if tenant_prior:
        await scorer.fit_tenant_prior()
    return result.examples


def in_domain_only(
    data: Dataset, pool: np.ndarray, held: np.ndarray, params: PredictorParams, make_encoder: EncoderFactory
) -> float:
    """APGR of the router whose only examples are the learned half (the `--data` router)."""
    encoder = make_encoder([data.texts[i] for i in pool])
    scorer = GainScorer(encoder, params)
    scorer.fit([data.texts[i] for i in pool], data.strong[pool], data.weak[pool])
    scores, _ = scorer.score_all([data.texts[i] for i in held])
    apgr = metrics(scores, data.strong[held], data.weak[held])["apgr"]
    return float(apgr or 0.0)


def evaluate_file(
    train: TrainSet,
    test: Path,
    args: Any,
    params: PredictorParams,
    models: tuple[ModelSpec, ModelSpec],
    make_encoder: EncoderFactory,
    *,
    tenant_prior: bool = True,
) -> Iterator[dict[str, Any]]:
    """The JSON lines of `evaluate --test FILE`, each as soon as it is measured (argparse
    namespace: strong, weak, learn, judge_noise and seed (lists), prompt_column); `tenant_prior`
    as TENANT_PRIOR_REFRESH_S > 0 in production. A curve is run once per noise level and seed,
    each line naming its seed; with more than one run a summary line per noise level and N
    follows (`seed_summary`)."""
    data = load_dataset([test], args.strong, args.weak, prompt_column=args.prompt_column)
    if not args.learn:
        yield cross_domain(train, test, data, params, models)  # every row scored: no seed to vary
        return
    learn = parse_learn(args.learn)
    lines: list[dict[str, Any]] = []
    for noise in args.judge_noise:
        for seed in args.seed:
            curve = learning_curve(
                train,
                test,
                data,
                params,
                models,
                learn,
                judge_noise=noise,
                seed=seed,
                make_encoder=make_encoder,
                tenant_prior=tenant_prior,
            )
            for line in curve:
                lines.append({**line, "seed": seed})
                yield lines[-1]
    if len(args.seed) > 1 or len(args.judge_noise) > 1:
        yield from seed_summary(lines)


def seed_summary(lines: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per test file, noise level and N learned, over the seeds of `lines` (learning-curve lines,
    one per file, noise level, N and seed): APGR's mean, its standard error and range, and the
    three comparisons the learning goals make, paired by seed (a split that is hard for one is
    hard for both): against N = 0 at the same noise, against the same N without noise (the
    noise's loss), and against the router trained on the learned half alone ("all" only). At
    N = 100 one seed's APGR moves by up to 0.1, so a goal is read from these, not from one curve."""
    by_key: dict[tuple[str, float, int], dict[int, dict[str, Any]]] = {}
    for line in lines:
        by_key.setdefault((line["test"], line["judge_noise"], line["learned"]), {})[line["seed"]] = line
    out = []
    for (test, noise, learned), per_seed in by_key.items():
        seeds = sorted(per_seed)
        apgr = [float(per_seed[s]["apgr"]) for s in seeds]
        row: dict[str, Any] = {"test": test, "learned": learned, "judge_noise": noise, **apgr_summary(seeds, apgr)}
        start = by_key.get((test, noise, 0), {})
        if learned and all(s in start for s in seeds):
            row |= mean_se("minus_learned_0", [a - float(start[s]["apgr"]) for a, s in zip(apgr, seeds, strict=True)])
        clean = by_key.get((test, 0.0, learned), {})
        if noise and all(s in clean for s in seeds):
            row |= mean_se("judge_noise_loss", [float(clean[s]["apgr"]) - a for a, s in zip(apgr, seeds, strict=True)])
        if all("in_domain_only_apgr" in per_seed[s] for s in seeds):
            alone = [float(per_seed[s]["in_domain_only_apgr"]) for s in seeds]
            row |= mean_se("in_domain_only_apgr", alone)
            row |= mean_se("minus_in_domain_only", [a - b for a, b in zip(apgr, alone, strict=True)])
        out.append(row)
    return out


def apgr_summary(seeds: Sequence[int], apgr: Sequence[float]) -> dict[str, Any]:
    """The part of a summary line every evaluation shares: the seeds, APGR's mean, standard error
    and range."""
    return {
        "summary": "seeds",
        "seeds": list(seeds),
        **mean_se("apgr", apgr),
        "apgr_min": min(apgr),
        "apgr_max": max(apgr),
    }


def mean_se(name: str, values: Sequence[float]) -> dict[str, float]:
    """`name`_mean and `name`_se (standard error of the mean; 0 for one value), rounded as APGR is."""
    arr = np.asarray(values, dtype=np.float64)
    se = float(arr.std(ddof=1) / np.sqrt(len(arr))) if len(arr) > 1 else 0.0
    return {f"{name}_mean": round(float(arr.mean()), 4), f"{name}_se": round(se, 4)}
