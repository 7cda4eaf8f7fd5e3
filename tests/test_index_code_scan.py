"""The in-process index between SCAN_CODES_ABOVE and APPROXIMATE_ABOVE examples: a scan of compact
codes proposes candidates, re-scored exactly (shared/index/ann.py CodeScanCandidates). Its
similarities are exact dot products, its recall of the router's neighbours on the shipped examples
is high, it is deterministic, and appended rows join without relearning the codebooks."""

from __future__ import annotations

import csv
import gc

import numpy as np
import pytest

from shared.composition.assemble import build_encoder, build_local_index
from shared.config import Settings
from shared.examples.labelled import LabelledExample
from shared.index.ann import CodeScanCandidates
from shared.index.local import LocalIndex
from shared.routing.predictor import PredictorParams
from tests.test_routing_table import TABLE

DIM, N, K = 32, 3000, 50


def clustered(n: int, dim: int, seed: int = 3) -> np.ndarray:
    """Unit vectors around 40 topics, as prompts cluster by subject."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((40, dim))
    vectors = centres[rng.integers(0, 40, n)] + 0.6 * rng.standard_normal((n, dim))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(np.float32)


def examples(n: int, start: int = 0, tenant: str | None = None) -> list[LabelledExample]:
    return [
        LabelledExample(content=f"prompt {i}", outcomes={"big": 1.0, "small": float(i % 2)}, source="t", tenant=tenant)
        for i in range(start, start + n)
    ]


def codes_index(vectors: np.ndarray, exs: list[LabelledExample]) -> LocalIndex:
    index = LocalIndex(DIM, scan_codes_above=1000)
    index.upsert_sync(exs, vectors)
    index.refresh_sync()
    assert isinstance(index.snapshot.ann, CodeScanCandidates)
    return index


def test_similarities_are_exact_and_in_order() -> None:
    vectors = clustered(N, DIM)
    exs = examples(N)
    index = codes_index(vectors, exs)
    position = {ex.id: i for i, ex in enumerate(exs)}
    for q in clustered(20, DIM, seed=11):
        found = index.search_sync(q, K)
        rows = [position[i] for i in found.ids]
        assert np.allclose(found.similarities, vectors[rows] @ q, atol=1e-5)
        assert list(found.similarities) == sorted(found.similarities, reverse=True)


async def test_recall_of_the_routers_neighbours_on_the_shipped_examples() -> None:
    """What the router asks (k = 200) of the shipped starter set, for the routing table's prompts
    and for starter rows themselves: at least 95% of the exact neighbours are found."""
    settings = Settings()
    encoder = build_encoder(settings)
    index, _ = await build_local_index(settings, encoder)
    snap = index.snapshot
    assert isinstance(snap.ann, CodeScanCandidates)
    with TABLE.open(encoding="utf-8", newline="") as fh:
        prompts = [row["prompt"] for row in csv.DictReader(fh)]
    queries = [*encoder.encode(prompts), *snap.matrix[:: len(snap.matrix) // 40][:40]]
    k = PredictorParams().k
    recalls = []
    for q in queries:
        found = set(index.search_sync(q, k).ids)
        exact = set(snap.ids[np.argsort(-(snap.matrix @ q), kind="stable")[:k]])
        recalls.append(len(found & exact) / k)
    print(f"recall@{k}: {np.mean(recalls):.3f} over {len(recalls)} queries")
    assert float(np.mean(recalls)) >= 0.95, recalls


def test_the_same_data_gives_the_same_neighbours() -> None:
    vectors = clustered(N, DIM)
    a, b = codes_index(vectors, examples(N)), codes_index(vectors, examples(N))
    for q in clustered(10, DIM, seed=5):
        assert list(a.search_sync(q, K).ids) == list(b.search_sync(q, K).ids)


def test_appended_rows_join_the_codes_without_relearning() -> None:
    vectors = clustered(N + 200, DIM)
    index = codes_index(vectors[:N], examples(N))
    first = index.snapshot.ann
    added = examples(200, start=N)
    index.upsert_sync(added, vectors[N:])
    index.refresh_sync()
    assert index.snapshot.ann is not first and index.snapshot.ann_trained_on == N
    assert first is not None and first.size == N  # the serving snapshot's codes were copied, not grown
    for i in (0, 57, 199):
        assert index.search_sync(vectors[N + i], 1).ids[0] == added[i].id


@pytest.mark.parametrize("tenant", [None, "acme"])
def test_tenants_see_shared_rows_and_their_own_only(tenant: str | None) -> None:
    vectors = clustered(N, DIM)
    exs = examples(N - 300) + examples(150, start=N - 300, tenant="acme") + examples(150, start=N - 150, tenant="other")
    index = codes_index(vectors, exs)
    tenant_of = {ex.id: ex.tenant for ex in exs}
    for q in clustered(20, DIM, seed=9):
        found = index.search_sync(q, K, tenant=tenant)
        assert len(found) == K
        assert {tenant_of[i] for i in found.ids} <= {None, tenant}


def test_the_codes_hold_the_shared_rows_only() -> None:
    """A tenant's rows never enter the candidate index: the shared search (the router's first) is
    the same as over the shared rows alone, and a tenant's search merges its own rows, searched
    exactly, with the shared candidates."""
    vectors = clustered(N + 600, DIM)
    shared = examples(N)
    mine, theirs = examples(300, start=N, tenant="acme"), examples(300, start=N + 300, tenant="other")
    plain = codes_index(vectors[:N], shared)
    mixed = LocalIndex(DIM, scan_codes_above=1000)
    # the tenants' rows among the shared ones, as feedback arrives between imports
    order = [*range(0, 1000), *range(N, N + 600), *range(1000, N)]
    every = shared + mine + theirs
    mixed.upsert_sync([every[i] for i in order], vectors[order])
    mixed.refresh_sync()
    snap = mixed.snapshot
    assert snap.ann is not None and snap.ann.size == N and snap.shared_rows is not None and len(snap.matrix) == N
    assert {snap.tenants[i] for i in snap.shared_rows} == {None}
    position = {ex.id: i for i, ex in enumerate(every)}
    for q in clustered(20, DIM, seed=13):
        found = mixed.search_sync(q, K)
        assert list(found.ids) == list(plain.search_sync(q, K).ids)
        assert np.array_equal(found.similarities, plain.search_sync(q, K).similarities)
        theirs_found = mixed.search_sync(q, K, tenant="acme")
        visible = [i for i, ex in enumerate(every) if ex.tenant in (None, "acme")]
        exact = sorted(visible, key=lambda i: -float(vectors[i] @ q))[:K]
        own_exact = [every[i].id for i in exact if every[i].tenant == "acme"]
        assert [i for i in theirs_found.ids if i in set(own_exact)] == own_exact  # every own one, in order
        rows = [position[i] for i in theirs_found.ids]
        assert np.allclose(theirs_found.similarities, vectors[rows] @ q, atol=1e-5)
        assert list(theirs_found.similarities) == sorted(theirs_found.similarities, reverse=True)
    for i in (N + 7, N + 250):  # a tenant's own vector finds itself first, another tenant's never
        assert mixed.search_sync(vectors[i], 1, tenant="acme").ids[0] == every[i].id
        assert every[i].id not in set(mixed.search_sync(vectors[i], K, tenant="other").ids)


def test_tenant_rows_appended_leave_the_codes_and_shared_rows_after_them_join() -> None:
    vectors = clustered(N + 400, DIM)
    index = codes_index(vectors[:N], examples(N))
    first = index.snapshot.ann
    index.upsert_sync(examples(200, start=N, tenant="acme"), vectors[N : N + 200])
    index.refresh_sync()
    assert index.snapshot.ann is not None and index.snapshot.ann.size == N and first is not None
    added = examples(200, start=N + 200)
    index.upsert_sync(added, vectors[N + 200 :])
    index.refresh_sync()
    snap = index.snapshot
    assert snap.ann is not None and snap.ann.size == N + 200 and snap.ann_trained_on == N  # joined, not relearnt
    assert snap.shared_rows is not None and list(snap.shared_rows[N:]) == list(range(N + 200, N + 400))
    for i in (0, 57, 199):
        assert index.search_sync(vectors[N + 200 + i], 1).ids[0] == added[i].id


def test_the_matrix_is_the_candidate_index_rows_and_outlives_it() -> None:
    """The snapshot's matrix is a read-only view of the rows faiss holds (one copy, not two); a
    view keeps the index alive, so it still reads the same rows once nothing else refers to it."""
    vectors = clustered(N, DIM)
    ann = CodeScanCandidates(vectors)
    view = ann.vectors
    rows = view[10:20]
    del ann, view
    gc.collect()
    assert np.array_equal(rows, vectors[10:20])
    assert not rows.flags.writeable
    with pytest.raises(ValueError):
        rows[0, 0] = 1.0


def test_nearest_gives_exact_similarities_most_similar_first_with_ties_by_position() -> None:
    """Duplicated rows tie exactly; the index orders ties by position, as the exact search does."""
    base = clustered(300, DIM)
    exs = examples(1200)
    index = codes_index(np.vstack([base] * 4), exs)
    position = {ex.id: i for i, ex in enumerate(exs)}
    for q in base[:20]:
        found = index.search_sync(q, K)
        pairs = [(s, position[i]) for s, i in zip(found.similarities.tolist(), found.ids, strict=True)]
        assert len({s for s, _ in pairs}) < len(pairs)  # the duplicates do tie
        assert pairs == sorted(pairs, key=lambda p: (-p[0], p[1]))


def test_keeping_k_of_more_candidates_gives_the_top_k_of_those_candidates() -> None:
    """faiss keeps the k best of the re-scored candidates: the same rows and similarities as
    re-scoring them all and keeping the first k."""
    vectors = clustered(N, DIM)
    ann = CodeScanCandidates(vectors)
    for q in clustered(20, DIM, seed=5):
        pos, sims = ann.nearest(q, K, 4 * K)
        all_pos, all_sims = ann.nearest(q, 4 * K)
        assert len(pos) == K
        assert np.array_equal(pos, all_pos[:K])
        assert np.array_equal(sims, all_sims[:K])
        assert np.allclose(sims, vectors[pos] @ q, atol=1e-5)


def test_neighbours_carry_their_examples_weights_and_ids() -> None:
    """Weights travel in the evidence rows and ids are taken from the snapshot when first read:
    both belong to the neighbour found, row for row."""
    vectors = clustered(N, DIM)
    exs = [
        LabelledExample(content=f"prompt {i}", outcomes={"big": 1.0}, source="t", weight=0.5 + (i % 7) / 7)
        for i in range(N)
    ]
    index = codes_index(vectors, exs)
    by_id = {ex.id: ex for ex in exs}
    for q in clustered(10, DIM, seed=21):
        found = index.search_sync(q, K)
        assert [float(w) for w in found.weights] == [by_id[i].weight for i in found.ids]
        assert [n.weight for n in found] == [by_id[i].weight for i in found.ids]
        rows = [exs.index(by_id[i]) for i in found.ids]
        assert np.allclose(found.similarities, vectors[rows] @ q, atol=1e-5)
