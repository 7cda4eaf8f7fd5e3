"""The exact LocalIndex search with tenant rows (shared/index/snapshot.py): the shared search reads
the shared rows only, a tenant's search merges its own rows with them, and both give exactly what
a brute-force ranking of the rows the tenant may see gives, ties by position included."""

from __future__ import annotations

import numpy as np
import pytest

from shared.examples.labelled import LabelledExample
from shared.index.local import LocalIndex

DIM, K = 16, 25


def rows(n: int, seed: int) -> np.ndarray:
    """Small whole numbers: every dot product is exact in float32 whatever the order of its sum, so
    equal rows tie exactly and the brute force below agrees with any kernel on every tie."""
    return np.random.default_rng(seed).integers(-2, 3, (n, DIM)).astype(np.float32)


def brute_force(vectors: np.ndarray, tenants: list[str | None], q: np.ndarray, k: int, tenant: str | None) -> list[int]:
    sims = vectors @ q
    visible = [i for i, t in enumerate(tenants) if t is None or t == tenant]
    return sorted(visible, key=lambda i: (-float(sims[i]), i))[:k]


@pytest.mark.parametrize("tenant", [None, "acme", "nobody"])
def test_exact_search_with_tenant_rows_is_the_brute_force_ranking(tenant: str | None) -> None:
    base = rows(400, seed=1)
    vectors = np.vstack([base, base[:50]])  # duplicates and equal sums tie: the lower position first
    tenants: list[str | None] = [["acme", "other", None, None][i % 4] for i in range(len(vectors))]
    exs = [
        LabelledExample(content=f"p{i}", outcomes={"m": float(i % 2)}, source="t", tenant=t)
        for i, t in enumerate(tenants)
    ]
    index = LocalIndex(DIM)
    index.upsert_sync(exs, vectors)
    index.refresh_sync()
    snap = index.snapshot
    assert snap.ann is None and len(snap.matrix) == tenants.count(None)  # the shared rows only
    for q in rows(30, seed=2):
        found = index.search_sync(q, K, tenant=tenant)
        expected = brute_force(vectors, tenants, q, K, tenant)
        assert list(found.ids) == [exs[i].id for i in expected]
        assert np.array_equal(found.similarities, vectors[expected] @ q)
        mine = [i for i, t in enumerate(tenants) if t == "acme"]
        own_expected = sorted(mine, key=lambda i: (-float(vectors[i] @ q), i))[:K]
        assert list(index.search_own_sync(q, K, tenant="acme").ids) == [exs[i].id for i in own_expected]


def test_a_tenant_finds_its_own_row_and_the_shared_search_never_does() -> None:
    unit = np.random.default_rng(3).standard_normal((205, DIM)).astype(np.float32)
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    shared, own = unit[:200], unit[200:]
    exs = [LabelledExample(content=f"s{i}", outcomes={"m": 1.0}, source="t") for i in range(200)]
    exs += [LabelledExample(content=f"o{i}", outcomes={"m": 0.0}, source="t", tenant="acme") for i in range(5)]
    index = LocalIndex(DIM)
    index.upsert_sync(exs, np.vstack([shared, own]))
    found = index.search_sync(own[3], 1, tenant="acme")
    assert list(found.ids) == [exs[203].id]
    assert exs[203].id not in set(index.search_sync(own[3], 205).ids)  # the shared search never sees it
    assert len(index.search_sync(own[3], 500, tenant="acme")) == 205


def test_every_vector_is_held_once() -> None:
    """The shared rows live in the shared search's matrix, the tenants' in the tenants' matrix, a
    block per tenant, and the index's own list of rows is views of those two: no third copy."""
    vectors = rows(300, seed=5)
    tenants: list[str | None] = [None if i % 3 else ("acme", "globex")[i % 2] for i in range(300)]
    exs = [LabelledExample(content=f"p{i}", outcomes={"m": 1.0}, source="t", tenant=t) for i, t in enumerate(tenants)]
    index = LocalIndex(DIM)
    index.upsert_sync(exs, vectors)
    index.refresh_sync()
    snap = index.snapshot
    assert snap.tenant_matrix is not None and snap.tenant_rows is not None
    assert len(snap.tenant_matrix) == 300 - tenants.count(None)
    for name in ("acme", "globex"):  # each tenant's rows are one block, in position order
        block = snap.tenant_slices[name]
        assert list(snap.tenant_rows[block]) == [i for i, t in enumerate(tenants) if t == name]
        assert np.array_equal(snap.tenant_matrix[block], vectors[snap.tenant_rows[block]])
    assert len(snap.rows) == 300
    for i, row in enumerate(snap.rows):
        assert np.array_equal(row, vectors[i])
        home = snap.matrix if tenants[i] is None else snap.tenant_matrix
        assert np.shares_memory(row, home)
