"""In-process exact cosine index (numpy). The embedded default.

Vectors are unit length, so cosine similarity is a dot product. The matrix is kept in
column-major order: a sparse query (the hashing encoder's ~100 non-zeros) then reads only
the columns it touches. Outcomes are kept as a matrix too (examples x outcome keys, NaN where
missing), so a search returns its k neighbours as arrays without building k objects.

From `approximate_above` examples on, exact search (which reads every vector) gives way to an
inverted-file index (ann.py) that proposes candidates; they are re-scored exactly here, so the
similarities are exact and the result is deterministic, and only recall is approximate.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from ..examples.labelled import LabelledExample, Neighbours
from .ann import IvfCandidates
from .base import IndexHealth

_SPARSE_QUERY_SHARE = 0.25
# Exact search costs ~0.1 ms per 1k examples of 256 dimensions on one core (memory-bound): past
# this size it would take most of the decision's 1 ms budget (docs/performance.md).
APPROXIMATE_ABOVE = 50_000
# Candidates asked of the approximate index per neighbour wanted (more when tenants filter).
_CANDIDATES_PER_K = 2
_CANDIDATES_PER_K_TENANTS = 4
# The cells are learnt once; retrain when the index has grown this much since.
_RETRAIN_GROWTH = 4


class LocalIndex:
    kind = "local"

    def __init__(self, dim: int, *, approximate_above: int = APPROXIMATE_ABOVE) -> None:
        self.dim = dim
        self.approximate_above = approximate_above
        self._ann: IvfCandidates | None = None
        self._ann_trained_on = 0
        self._rewritten = False  # a row was replaced or removed: appending is not enough
        self._examples: list[LabelledExample] = []
        self._pos: dict[str, int] = {}
        self._rows: list[np.ndarray] = []
        self._matrix = np.zeros((0, dim), dtype=np.float32, order="F")
        self._tenants = np.zeros(0, dtype=object)
        self._dirty = True  # the derived arrays are built on first use

    # -- writes ---------------------------------------------------------------------------
    async def upsert(self, examples: Sequence[LabelledExample], vectors: np.ndarray) -> int:
        return self.upsert_sync(examples, vectors)

    def upsert_sync(self, examples: Sequence[LabelledExample], vectors: np.ndarray) -> int:
        if len(examples) != len(vectors):
            raise ValueError("examples and vectors differ in length")
        if len(examples) and vectors.shape[1] != self.dim:
            raise ValueError(f"vector dim {vectors.shape[1]} != index dim {self.dim}")
        for ex, vec in zip(examples, vectors, strict=True):
            row = np.asarray(vec, dtype=np.float32)
            pos = self._pos.get(ex.id)
            if pos is None:
                self._pos[ex.id] = len(self._examples)
                self._examples.append(ex)
                self._rows.append(row)
            else:
                self._examples[pos] = ex
                self._rows[pos] = row
                self._rewritten = True
        self._dirty = True
        return len(examples)

    async def delete(self, ids: Sequence[str]) -> int:
        drop = {i for i in ids if i in self._pos}
        if not drop:
            return 0
        keep = [n for n, ex in enumerate(self._examples) if ex.id not in drop]
        self._examples = [self._examples[n] for n in keep]
        self._rows = [self._rows[n] for n in keep]
        self._pos = {ex.id: n for n, ex in enumerate(self._examples)}
        self._rewritten = True
        self._dirty = True
        return len(drop)

    def _refresh(self) -> None:
        approximate = len(self._rows) >= self.approximate_above
        if self._rows:
            # column-major only for sparse vectors (the hashing encoder), whose queries read just
            # the columns they touch; dense vectors (tfidf-svd) and re-scoring candidates read
            # whole rows, and a row-major product is ~2x faster for them
            stacked = np.vstack(self._rows)
            sparse = not approximate and _mostly_sparse(stacked)
            self._matrix = np.asfortranarray(stacked) if sparse else stacked
            # the rows become views of the matrix: one copy of the vectors in memory, not two
            self._rows = list(self._matrix)
        else:
            self._matrix = np.zeros((0, self.dim), dtype=np.float32, order="F")
        self._tenants = np.array([ex.tenant for ex in self._examples], dtype=object)
        self._has_tenants = any(t is not None for t in self._tenants)
        self._visible_cache: dict[str | None, np.ndarray] = {}
        self._own_cache: dict[str, np.ndarray] = {}
        self._ids = np.array([ex.id for ex in self._examples], dtype=object)
        self._weights = np.array([ex.weight for ex in self._examples], dtype=np.float64)
        self._keys = sorted({k for ex in self._examples for k in ex.outcomes})
        col = {k: j for j, k in enumerate(self._keys)}
        self._outcomes = np.full((len(self._examples), len(self._keys)), np.nan)
        for i, ex in enumerate(self._examples):
            for k, v in ex.outcomes.items():
                self._outcomes[i, col[k]] = v
        self._refresh_approximate(approximate)
        self._dirty = False

    def _refresh_approximate(self, approximate: bool) -> None:
        n = len(self._rows)
        if not approximate:
            self._ann, self._ann_trained_on = None, 0
        elif self._ann is None or self._rewritten or self._ann.size > n or n > _RETRAIN_GROWTH * self._ann_trained_on:
            self._ann, self._ann_trained_on = IvfCandidates(self._matrix), n
        else:
            self._ann.add(self._matrix[self._ann.size :])
        self._rewritten = False

    # -- reads ----------------------------------------------------------------------------
    def similarities(self, vector: np.ndarray) -> np.ndarray:
        if self._dirty:
            self._refresh()
        nz = np.flatnonzero(vector)
        if self._matrix.flags.f_contiguous and len(nz) < _SPARSE_QUERY_SHARE * self.dim:
            out: np.ndarray = self._matrix[:, nz] @ vector[nz]
            return out
        full: np.ndarray = self._matrix @ vector
        return full

    async def search(self, vector: np.ndarray, k: int, *, tenant: str | None = None) -> Neighbours:
        return self.search_sync(vector, k, tenant=tenant)

    def search_sync(self, vector: np.ndarray, k: int, *, tenant: str | None = None) -> Neighbours:
        if self._dirty:
            self._refresh()
        n = len(self._examples)
        if n == 0 or k <= 0:
            return Neighbours([], np.zeros(0), np.zeros(0), self._keys, np.zeros((0, len(self._keys))))
        query = np.asarray(vector, dtype=np.float32)
        if self._ann is not None:
            found = self._search_approximate(query, k, tenant)
            if found is not None:
                return found
        sims = self.similarities(query)
        if self._has_tenants:
            sims = np.where(self._visible(tenant), sims, -np.inf)
        k = min(k, n)
        top = np.argpartition(-sims, k - 1)[:k] if k < n else np.arange(n)
        # ties: lower position first, so results are deterministic
        top = top[np.lexsort((top, -sims[top]))]
        top = top[sims[top] > -np.inf]
        return Neighbours(self._ids[top], sims[top], self._weights[top], self._keys, self._outcomes[top])

    async def search_own(self, vector: np.ndarray, k: int, *, tenant: str) -> Neighbours:
        return self.search_own_sync(vector, k, tenant=tenant)

    def search_own_sync(self, vector: np.ndarray, k: int, *, tenant: str) -> Neighbours:
        """The k most similar of `tenant`'s own examples only (the router's second search: a
        tenant's labels are always seen, however many shared examples there are). Exact: a
        tenant's rows are few next to the shared ones."""
        if self._dirty:
            self._refresh()
        rows = self._own_rows(tenant)
        if len(rows) == 0 or k <= 0:
            return Neighbours([], np.zeros(0), np.zeros(0), self._keys, np.zeros((0, len(self._keys))))
        sims = self._matrix[rows] @ np.asarray(vector, dtype=np.float32)
        if k < len(rows):
            part = np.argpartition(-sims, k - 1)[:k]
            rows, sims = rows[part], sims[part]
        order = np.lexsort((rows, -sims))  # ties: lower position first, as search_sync
        top = rows[order]
        return Neighbours(self._ids[top], sims[order], self._weights[top], self._keys, self._outcomes[top])

    def _own_rows(self, tenant: str) -> np.ndarray:
        rows = self._own_cache.get(tenant)
        if rows is None:
            rows = np.flatnonzero(self._tenants == tenant) if self._has_tenants else np.zeros(0, dtype=np.int64)
            if len(self._own_cache) > 256:
                self._own_cache.clear()
            self._own_cache[tenant] = rows
        return rows

    def _visible(self, tenant: str | None) -> np.ndarray:
        """Which rows `tenant` may see (shared ones and its own), computed once per tenant per
        refresh: comparing an object array on every search costs more than the search."""
        mask = self._visible_cache.get(tenant)
        if mask is None:
            mask = (self._tenants == None) | (self._tenants == tenant)  # noqa: E711
            if len(self._visible_cache) > 256:
                self._visible_cache.clear()
            self._visible_cache[tenant] = mask
        return mask

    def _search_approximate(self, query: np.ndarray, k: int, tenant: str | None) -> Neighbours | None:
        """Exactly re-scored candidates; None when a tenant filter left too few (search exactly)."""
        assert self._ann is not None
        per_k = _CANDIDATES_PER_K_TENANTS if self._has_tenants else _CANDIDATES_PER_K
        cand = np.sort(self._ann.search(query, per_k * k))
        if self._has_tenants:
            cand = cand[self._visible(tenant)[cand]]
            if len(cand) < k:
                return None
        sims = self._matrix[cand] @ query
        order = np.lexsort((cand, -sims))[:k]
        top, top_sims = cand[order], sims[order]
        return Neighbours(self._ids[top], top_sims, self._weights[top], self._keys, self._outcomes[top])

    async def count(self) -> int:
        return len(self._examples)

    async def list(self, *, limit: int = 100, offset: int = 0, tenant: str | None = None) -> list[LabelledExample]:
        visible = [ex for ex in self._examples if ex.tenant is None or ex.tenant == tenant]
        return visible[offset : offset + limit]

    async def get(self, example_id: str) -> LabelledExample | None:
        pos = self._pos.get(example_id)
        return self._examples[pos] if pos is not None else None

    async def health(self) -> IndexHealth:
        t0 = time.perf_counter()
        n = len(self._examples)
        return IndexHealth(ok=True, detail=f"{n} examples in memory", latency_ms=_ms(t0))

    async def close(self) -> None:
        return None


def _mostly_sparse(matrix: np.ndarray, sample: int = 256) -> bool:
    head = matrix[:sample]
    return bool(np.count_nonzero(head) < _SPARSE_QUERY_SHARE * head.size)


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 3)
