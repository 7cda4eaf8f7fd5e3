"""How the routing decision's cost grows with the number of labelled examples.

    python -m bench.scale [--sizes 1000,10000,100000,1000000] [--queries 300] [--skip-weaviate]

For each size, a LocalIndex is filled with labelled examples and the in-process decision is timed
as `evaluate` times it (shared/evaluation.py GainScorer: encode -> search -> predict), with the
project's default encoder, k and predictor settings. Up to the starter set's size the examples
are the starter prompts themselves; beyond it they are synthetic prompts made from them (30% of
each prompt's words replaced by words drawn from the whole set), encoded by the real encoder and
labelled with the outcomes of the prompt they came from, so that the vectors keep the real
data's structure. Queries are made the same way from other draws.

Also measured: exact search at the same size (numpy, the LocalIndex's exact path) for the
recall@k of the approximate search and what exact would cost, and, for 1k and 10k, the same
decision through WeaviateIndex against the test suite's fake Weaviate (in process: the fake's
own brute-force search is part of that time, so it is a ceiling, not Weaviate's figure).
Results go to bench/results/scale-<time>.json (git-ignored).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import orjson
import psutil

from shared.config import PROJECT_DIR, Settings
from shared.context import build_encoder
from shared.encoders.base import Encoder
from shared.index.local import APPROXIMATE_ABOVE, LocalIndex
from shared.routing.examples import LabelledExample, read_labelled_csv
from shared.routing.predictor import PredictorParams, outcome_priors, predict_qualities

RESULTS = PROJECT_DIR / "bench" / "results"
KEYS = ("tier:frontier", "tier:economy")
REPLACE_SHARE = 0.3
CHUNK = 20_000


class SyntheticPrompts:
    def __init__(self, base: Sequence[LabelledExample], seed: int) -> None:
        self.base = base
        self.rng = np.random.default_rng(seed)
        words = [w for ex in base[:3000] for w in ex.content.split()]
        self.pool = np.array(words, dtype=object)

    def one(self) -> tuple[str, dict[str, float]]:
        ex = self.base[int(self.rng.integers(len(self.base)))]
        words = ex.content.split()
        swap = self.rng.random(len(words)) < REPLACE_SHARE
        drawn = self.pool[self.rng.integers(0, len(self.pool), len(words))]
        return " ".join(d if s else w for w, s, d in zip(words, swap, drawn, strict=True)), ex.outcomes


def build_examples(
    n: int, base: Sequence[LabelledExample], encoder: Encoder, *, uuid_ids: bool = False
) -> Iterator[tuple[list[LabelledExample], np.ndarray]]:
    """Chunks of (examples, vectors); the prompt text is not kept beyond encoding (memory).
    Ids are `scale-<position>` (recall is computed on positions), or UUIDs for Weaviate."""
    synth = SyntheticPrompts(base, seed=1)
    made = 0
    while made < n:
        size = min(CHUNK, n - made)
        texts, outcomes = [], []
        for i in range(made, made + size):
            if i < len(base):
                texts.append(base[i].content)
                outcomes.append(base[i].outcomes)
            else:
                text, out = synth.one()
                texts.append(text)
                outcomes.append(out)
        vectors = encoder.encode(texts)
        exs = [
            LabelledExample(
                content=f"synthetic {made + j}", outcomes=o, source="scale", id="" if uuid_ids else f"scale-{made + j}"
            )
            for j, o in enumerate(outcomes)
        ]
        made += size
        yield exs, vectors


def exact_top(matrix: np.ndarray, query: np.ndarray, k: int) -> np.ndarray:
    sims = matrix @ query
    k = min(k, len(sims))
    return np.argpartition(-sims, k - 1)[:k]


def percentile(values: Sequence[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 4)


def measure_local(
    n: int, base: Sequence[LabelledExample], encoder: Encoder, params: PredictorParams, queries: list[str]
) -> dict[str, Any]:
    rss0 = psutil.Process().memory_info().rss
    t0 = time.perf_counter()
    index = LocalIndex(encoder.dim)
    outcomes: list[dict[str, float]] = []
    for exs, vectors in build_examples(n, base, encoder):
        index.upsert_sync(exs, vectors)
        outcomes.extend(ex.outcomes for ex in exs)
    encoded_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    index.search_sync(encoder.encode([queries[0]])[0], params.k)  # builds the matrix (and cells)
    build_s = time.perf_counter() - t1
    priors = outcome_priors(outcomes)
    prior_list = [priors.get(k, 0.5) for k in KEYS]
    label_keys = [(k,) for k in KEYS]

    decision, search, exact, recall = [], [], [], []
    matrix = np.asarray(index._matrix)  # the index's own float32 rows: the truth for recall
    for text in queries:
        t = time.perf_counter()
        vec = encoder.encode([text])[0]
        ts = time.perf_counter()
        found = index.search_sync(vec, params.k)
        te = time.perf_counter()
        predict_qualities(found, label_keys, prior_list, params)
        decision.append((time.perf_counter() - t) * 1000)
        search.append((te - ts) * 1000)
        t = time.perf_counter()
        truth = exact_top(matrix, vec, params.k)
        exact.append((time.perf_counter() - t) * 1000)
        got = (
            {int(i.split("-")[1]) for i in found.ids}
            if hasattr(found, "ids")
            else {int(x.id.split("-")[1]) for x in found}
        )
        recall.append(len(got & set(truth.tolist())) / len(truth))
    rss = psutil.Process().memory_info().rss
    out = {
        "n": n,
        "search": "approximate (IVF)" if index._ann is not None else "exact",
        "nlist": index._ann.nlist if index._ann is not None else None,
        "nprobe": index._ann.nprobe if index._ann is not None else None,
        "encode_and_fill_s": round(encoded_s, 1),
        "build_s": round(build_s, 2),
        "decision_ms_p50": percentile(decision, 50),
        "decision_ms_p90": percentile(decision, 90),
        "search_ms_p50": percentile(search, 50),
        "exact_search_ms_p50": percentile(exact, 50),
        "recall_at_k": round(float(np.mean(recall)), 4),
        "rss_growth_mb": round((rss - rss0) / 2**20),
    }
    del index, matrix
    gc.collect()
    return out


async def measure_weaviate(
    n: int, base: Sequence[LabelledExample], encoder: Encoder, params: PredictorParams, queries: list[str]
) -> dict[str, Any]:
    from shared.index.weaviate import WeaviateIndex
    from tests.fakes.weaviate import FakeWeaviateServer

    with FakeWeaviateServer() as server:
        s = Settings(
            weaviate_url=server.url,
            weaviate_grpc_host="127.0.0.1",
            weaviate_grpc_port=server.grpc_port,
            weaviate_collection=f"LLMDocumentScale{n}",
            weaviate_timeout_s=30.0,
        )
        index = WeaviateIndex.from_settings(s, dim=encoder.dim, encoder_name=getattr(encoder, "name", "bench"))
        try:
            outcomes: list[dict[str, float]] = []
            t0 = time.perf_counter()
            for exs, vectors in build_examples(n, base, encoder, uuid_ids=True):
                await index.upsert(exs, vectors)
                outcomes.extend(ex.outcomes for ex in exs)
            fill_s = time.perf_counter() - t0
            priors = outcome_priors(outcomes)
            prior_list = [priors.get(k, 0.5) for k in KEYS]
            label_keys = [(k,) for k in KEYS]
            decision = []
            for text in queries:
                t = time.perf_counter()
                vec = encoder.encode([text])[0]
                found = await index.search(vec, params.k)
                predict_qualities(found, label_keys, prior_list, params)
                decision.append((time.perf_counter() - t) * 1000)
        finally:
            await index.close()
    return {
        "n": n,
        "fill_s": round(fill_s, 1),
        "decision_ms_p50": percentile(decision, 50),
        "decision_ms_p90": percentile(decision, 90),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000,1000000")
    parser.add_argument("--weaviate-sizes", default="1000,10000")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--skip-weaviate", action="store_true")
    args = parser.parse_args(argv)
    settings = Settings()
    encoder = build_encoder(settings)
    if not isinstance(encoder, Encoder):
        raise SystemExit("bench.scale needs a local encoder (ENCODER=tfidf-svd or hashing)")
    params = PredictorParams(
        k=settings.routing_k,
        prior_strength=settings.routing_prior_strength,
        similarity_power=settings.routing_similarity_power,
    )
    base = list(read_labelled_csv(settings.examples_path, model_columns=list(KEYS)))
    queries = [SyntheticPrompts(base, seed=2).one()[0] for _ in range(args.queries)]
    res: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ"),
        "encoder": getattr(encoder, "name", type(encoder).__name__),
        "dim": encoder.dim,
        "k": params.k,
        "approximate_above": APPROXIMATE_ABOVE,
        "starter_examples": len(base),
        "local": [],
        "weaviate": [],
    }
    print(f"encoder {res['encoder']} ({encoder.dim} d), k={params.k}, exact below {APPROXIMATE_ABOVE:,} examples")
    print(
        "| examples | search | decision p50 | decision p90 | search p50 | exact search p50 | recall@k | build | RSS growth |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for n in (int(x) for x in args.sizes.split(",") if x):
        row = measure_local(n, base, encoder, params, queries)
        res["local"].append(row)
        print(
            f"| {n:,} | {row['search']} | {row['decision_ms_p50']:.3f} ms | {row['decision_ms_p90']:.3f} ms | "
            f"{row['search_ms_p50']:.3f} ms | {row['exact_search_ms_p50']:.3f} ms | {row['recall_at_k']:.3f} | "
            f"{row['build_s']:.1f} s | {row['rss_growth_mb']} MB |",
            flush=True,
        )
    if not args.skip_weaviate:
        for n in (int(x) for x in args.weaviate_sizes.split(",") if x):
            try:
                row = asyncio.run(measure_weaviate(n, base, encoder, params, queries[:100]))
            except ImportError as exc:
                row = {"n": n, "pending": f"Weaviate index or fake missing: {exc}"}
            res["weaviate"].append(row)
            print(f"weaviate (fake, in process) {n:,}: {row}", flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"scale-{res['date']}.json"
    out.write_bytes(orjson.dumps(res, option=orjson.OPT_INDENT_2))
    print(f"results: {out.relative_to(PROJECT_DIR)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
