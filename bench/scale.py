"""How the routing decision's cost grows with the number of labelled examples.

    python -m bench.scale [--sizes 1000,10000,100000,1000000] [--queries 300] [--skip-weaviate]
                          [--no-route-http] [--route-http-1m] [--quick]

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

`/api/v1/route` over HTTP (`--route-http`, on by default up to 100k examples; above, only with
`--route-http-1m`, since the router then encodes every example at start): the same examples are
written to a temporary gzipped CSV (the starter file's format), the router's local host is
started on it (`EXAMPLES_PATH`; auth on with a minted token; no database, as /route writes no
request-log row; no upstream, as /route calls no model) and wrk loads `POST /api/v1/route`
(the queries in turn) and `GET /health/live` at c=1. Start-up time, the first /route (which
builds the index's matrix and cells) and RSS are recorded; the router is stopped after each size.
Results go to bench/results/scale-<time>.json (git-ignored).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime as dt
import gc
import gzip
import io
import secrets
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import psutil

from devtools.embedded import free_port
from shared.composition.assemble import build_encoder
from shared.config import PROJECT_DIR, Settings
from shared.encoders.base import Encoder
from shared.examples.labelled import LabelledExample, read_labelled_csv
from shared.index.local import APPROXIMATE_ABOVE, LocalIndex
from shared.routing.predictor import PredictorParams, outcome_priors, predict_qualities

from . import wrk
from .procs import started, stop_strays
from .run import machine, mint_token, router_env, write_catalog

RESULTS = PROJECT_DIR / "bench" / "results"
KEYS = ("tier:frontier", "tier:economy")
REPLACE_SHARE = 0.3
CHUNK = 20_000
ROUTE_HTTP_MAX_DEFAULT = 100_000  # above: only with --route-http-1m (start-up encodes every example)
ROUTE_BODIES = 100  # the queries wrk posts in turn

Sink = Callable[[list[str], list[dict[str, float]]], None]


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


class ExamplesCsv:
    """The examples as the router reads them: a gzipped CSV `prompt,tier:frontier,tier:economy`
    (shared/data/starter_examples.csv.gz's format), written chunk by chunk as they are made."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # level 1: quick to write, and the file is read once; closed by close()
        self._fh: io.TextIOWrapper = gzip.open(  # noqa: SIM115
            path, "wt", encoding="utf-8", newline="", compresslevel=1
        )
        self._csv = csv.writer(self._fh)
        self._csv.writerow(["prompt", *KEYS])
        self._distinct: set[int] = set()
        self.rows = 0
        self.seconds = 0.0

    def write(self, texts: list[str], outcomes: list[dict[str, float]]) -> None:
        t = time.perf_counter()
        for text, out in zip(texts, outcomes, strict=True):
            self._csv.writerow([text, *(_cell(out.get(k)) for k in KEYS)])
            self._distinct.add(hash(text))
        self.rows += len(texts)
        self.seconds += time.perf_counter() - t

    @property
    def distinct(self) -> int:
        """Rows the router will hold: an example's id is derived from its text, so repeats merge."""
        return len(self._distinct)

    def close(self) -> None:
        self._fh.close()


def _cell(value: float | None) -> str:
    if value is None:
        return ""
    if value in (0.0, 1.0):
        return "True" if value == 1.0 else "False"
    return f"{value:.4f}"


def build_examples(
    n: int, base: Sequence[LabelledExample], encoder: Encoder, *, uuid_ids: bool = False, sink: Sink | None = None
) -> Iterator[tuple[list[LabelledExample], np.ndarray]]:
    """Chunks of (examples, vectors); the prompt text is not kept beyond encoding (memory), but
    handed to `sink` first when given. Ids are `scale-<position>` (recall is computed on
    positions), or UUIDs for Weaviate."""
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
        if sink is not None:
            sink(texts, outcomes)
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
    n: int,
    base: Sequence[LabelledExample],
    encoder: Encoder,
    params: PredictorParams,
    queries: list[str],
    csv_out: ExamplesCsv | None = None,
) -> dict[str, Any]:
    rss0 = psutil.Process().memory_info().rss
    t0 = time.perf_counter()
    index = LocalIndex(encoder.dim)
    outcomes: list[dict[str, float]] = []
    for exs, vectors in build_examples(n, base, encoder, sink=csv_out.write if csv_out else None):
        index.upsert_sync(exs, vectors)
        outcomes.extend(ex.outcomes for ex in exs)
    encoded_s = time.perf_counter() - t0 - (csv_out.seconds if csv_out else 0.0)
    t1 = time.perf_counter()
    index.search_sync(encoder.encode([queries[0]])[0], params.k)  # builds the matrix (and cells)
    build_s = time.perf_counter() - t1
    priors = outcome_priors(outcomes)
    prior_list = [priors.get(k, 0.5) for k in KEYS]
    label_keys = [(k,) for k in KEYS]

    decision, search, exact, recall = [], [], [], []
    matrix = np.asarray(index.snapshot.matrix)  # the index's own float32 rows: the truth for recall
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
        "search": "approximate (IVF)" if index.snapshot.ann is not None else "exact",
        "nlist": index.snapshot.ann.nlist if index.snapshot.ann is not None else None,
        "nprobe": index.snapshot.ann.nprobe if index.snapshot.ann is not None else None,
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


# -- /api/v1/route over HTTP ----------------------------------------------------------------------
class RssPeak:
    """The highest RSS of a process (and its children), sampled every 0.2 s in a thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                proc = psutil.Process(self.pid)
                rss = proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(recursive=True))
            except psutil.Error:
                return
            self.peak_mb = max(self.peak_mb, rss / 2**20)
            self._stop.wait(0.2)

    def __enter__(self) -> RssPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def post_json(url: str, body: dict[str, Any], headers: dict[str, str], timeout_s: float) -> tuple[int, bytes]:
    req = urllib.request.Request(  # noqa: S310 - loopback URL
        url, data=orjson.dumps(body), headers={"content-type": "application/json", **headers}, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:  # noqa: S310
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def measure_route_http(
    n: int, examples: ExamplesCsv, queries: list[str], load_s: int, ready_timeout_s: float
) -> dict[str, Any]:
    """The router's local host on `examples`: start-up, first /route, then wrk at c=1 on
    POST /api/v1/route (the queries in turn) and GET /health/live."""
    tmp = examples.path.parent
    secret = secrets.token_urlsafe(48)
    # /route calls no model: the catalog's models point at a loopback port nothing listens on
    catalog = write_catalog(tmp / "catalog.yaml", f"http://127.0.0.1:{free_port()}/v1")
    env = {
        **router_env(catalog, tmp / "pgdata", secret),
        "EXAMPLES_PATH": str(examples.path),
        # /route writes no request-log row (service.decide: no log, no quota), so no database
        "DATABASE_ENABLED": "false",
    }
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "devtools.localhost", "--port", str(port)]
    row: dict[str, Any] = {"n": n, "csv_rows": examples.rows, "distinct_examples": examples.distinct}
    try:
        t0 = time.perf_counter()
        with started("router", argv, tmp / "router.log", env) as proc, RssPeak(proc.pid) as peak:
            try:
                proc.wait_http(f"{url}/health/ready", timeout_s=ready_timeout_s)
            except RuntimeError:
                if proc.alive():  # still encoding: report the bound, skip the loads
                    row["not_ready_after_s"] = round(time.perf_counter() - t0, 1)
                    row["peak_rss_mb_start"] = round(peak.peak_mb)
                    return row
                raise
            row["startup_s"] = round(time.perf_counter() - t0, 1)
            row["peak_rss_mb_start"] = round(peak.peak_mb)
            row["rss_mb_ready"] = round(proc.rss_mb() + proc.children_rss_mb())
            log(f"{n:,}: router ready in {row['startup_s']} s, RSS {row['rss_mb_ready']} MB")
            auth = {"Authorization": f"Bearer {mint_token(secret, ['invoke'])}"}
            bodies = [{"model": "auto", "messages": [{"role": "user", "content": q}]} for q in queries[:ROUTE_BODIES]]
            # the first search builds the index's matrix (and, above 50k, its cells)
            t = time.perf_counter()
            status, answer = post_json(f"{url}/api/v1/route", bodies[0], auth, timeout_s=ready_timeout_s)
            row["first_route_s"] = round(time.perf_counter() - t, 2)
            if status != 200:
                raise RuntimeError(f"/api/v1/route answered {status}: {answer[:300]!r}\n{proc.tail()}")
            first = orjson.loads(answer)
            row["index"] = first.get("index")
            row["neighbours"] = len(first.get("neighbours") or [])
            if row["index"] != "ok" or not row["neighbours"]:
                log(f"warning: {n:,}: the router routed on priors (index {row['index']!r}): not the figure wanted")
            # the router's own decision_ms (encode -> search -> predict, inside the process)
            server = [orjson.loads(post_json(f"{url}/api/v1/route", b, auth, 30)[1])["decision_ms"] for b in bodies]
            row["server_decision_ms_p50"] = percentile(server, 50)
            script = wrk.post_rotating_script(tmp / "route.lua", bodies, auth)
            wrk.run(f"{url}/api/v1/route", connections=1, duration_s=max(1, load_s // 5), script=script)
            route = wrk.run(f"{url}/api/v1/route", connections=1, duration_s=load_s, script=script)
            live = wrk.run(f"{url}/health/live", connections=1, duration_s=load_s)
            for name, r in (("route", route), ("live", live)):
                if r.non_2xx or r.socket_errors:
                    log(f"warning: {name}: {r.non_2xx} non-2xx responses, {r.socket_errors} socket errors")
            row["route_c1"], row["live_c1"] = route.as_dict(), live.as_dict()
            row["route_over_live_p50_ms"] = round(route.p50_ms - live.p50_ms, 3)
            row["route_over_live_p99_ms"] = round(route.p99_ms - live.p99_ms, 3)
            row["rss_mb"] = round(proc.rss_mb() + proc.children_rss_mb())
    finally:
        # nothing of the router's should outlive it (no database here; a safeguard all the same)
        strays = stop_strays(str(tmp))
        if strays:
            log(f"stopped {strays} processes the router left running")
    return row


def log(msg: str) -> None:
    print(f"[scale {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def print_route_table(rows: list[dict[str, Any]], local: dict[int, float]) -> None:
    print("\n`/api/v1/route` over HTTP (c=1, wrk; the router's local host, auth on)")
    print(
        "| examples | router start | first /route | RSS | /route p50 | /route p99 | /health/live p50 | "
        "/health/live p99 | route - live p50 | router's decision_ms p50 | in-process decision p50 |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        n = r["n"]
        if "route_c1" not in r:
            why = r.get("error") or f"not ready after {r.get('not_ready_after_s')} s (start-up still encoding)"
            print(f"| {n:,} | {why} |")
            continue
        rt, lv = r["route_c1"], r["live_c1"]
        print(
            f"| {n:,} | {r['startup_s']:.1f} s | {r['first_route_s']:.2f} s | {r['rss_mb']:,} MB | "
            f"{rt['p50_ms']:.3f} ms | {rt['p99_ms']:.3f} ms | {lv['p50_ms']:.3f} ms | {lv['p99_ms']:.3f} ms | "
            f"{r['route_over_live_p50_ms']:.3f} ms | {r['server_decision_ms_p50']:.3f} ms | "
            f"{local.get(n, float('nan')):.3f} ms |",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000,1000000")
    parser.add_argument("--weaviate-sizes", default="1000,10000")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--skip-weaviate", action="store_true")
    parser.add_argument(
        "--route-http",
        action=argparse.BooleanOptionalAction,
        default=True,
        help=f"also load POST /api/v1/route over HTTP (sizes up to {ROUTE_HTTP_MAX_DEFAULT:,})",
    )
    parser.add_argument(
        "--route-http-1m", action="store_true", help="--route-http above 100k too (the router encodes them at start)"
    )
    parser.add_argument("--quick", action="store_true", help="5 s HTTP loads instead of 10 s")
    parser.add_argument("--ready-timeout", type=float, default=600.0, help="bound on the router's start-up, s")
    args = parser.parse_args(argv)
    load_s = 5 if args.quick else 10
    if args.route_http:
        wrk.ensure_wrk()
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
        "machine": machine(),
        "local": [],
        "weaviate": [],
        "route_http": [],
        "route_http_load_s": load_s,
    }
    print(f"encoder {res['encoder']} ({encoder.dim} d), k={params.k}, exact below {APPROXIMATE_ABOVE:,} examples")
    print(
        "| examples | search | decision p50 | decision p90 | search p50 | exact search p50 | recall@k | build | RSS growth |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for n in (int(x) for x in args.sizes.split(",") if x):
        http = args.route_http and (n <= ROUTE_HTTP_MAX_DEFAULT or args.route_http_1m)
        with tempfile.TemporaryDirectory(prefix="llm-router-scale-") as tmp:
            examples = ExamplesCsv(Path(tmp) / "examples.csv.gz") if http else None
            try:
                row = measure_local(n, base, encoder, params, queries, examples)
            finally:
                if examples is not None:
                    examples.close()
            res["local"].append(row)
            print(
                f"| {n:,} | {row['search']} | {row['decision_ms_p50']:.3f} ms | {row['decision_ms_p90']:.3f} ms | "
                f"{row['search_ms_p50']:.3f} ms | {row['exact_search_ms_p50']:.3f} ms | {row['recall_at_k']:.3f} | "
                f"{row['build_s']:.1f} s | {row['rss_growth_mb']} MB |",
                flush=True,
            )
            if examples is None:
                continue
            try:
                route_row = measure_route_http(n, examples, queries, load_s, args.ready_timeout)
            except Exception as exc:  # one size failing keeps the others' results
                route_row = {"n": n, "error": f"{type(exc).__name__}: {str(exc)[:2000]}"}
                log(f"{n:,}: /api/v1/route over HTTP failed: {route_row['error']}")
            route_row["csv_write_s"] = round(examples.seconds, 1)
            res["route_http"].append(route_row)
    if res["route_http"]:
        print_route_table(res["route_http"], {r["n"]: r["decision_ms_p50"] for r in res["local"]})
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
