"""In-process exact cosine index (numpy). The embedded default.

Vectors are unit length, so cosine similarity is a dot product. The matrix is kept in
column-major order: a sparse query (the hashing encoder's ~100 non-zeros) then reads only
the columns it touches. Weights and outcomes are kept as one matrix too, in the form the predictor
multiplies (examples x (1 + 2·keys): the weight, then presence per key, then the outcome or 0;
labelled.evidence_matrix), so a search returns its k neighbours as arrays without building k
objects, in one gather of k rows; its keys are bounded by the catalog, because the API accepts
only catalog ids and tier keys.

Searches read an immutable snapshot of those arrays. A write through the async API rebuilds the
snapshot in a worker thread (numpy and faiss release the GIL) while the old one keeps serving,
and swaps it in when it is ready: a large import never stalls the event loop.

From `scan_codes_above` examples on, exact search (which reads every vector) gives way to a scan
of compact codes, and from `approximate_above` on to an inverted file (ann.py); either proposes
candidates that faiss re-scores exactly against the rows it then holds (the snapshot's matrix is
a view of them), so the similarities are exact and the result is deterministic, and only recall
is approximate.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..examples.labelled import LabelledExample, Neighbours, evidence_matrix
from .ann import CodeScanCandidates, IvfCandidates
from .base import IndexHealth

_SPARSE_QUERY_SHARE = 0.25  # a query this sparse reads only its columns
# Exact search costs ~0.1 ms per 1k examples of 256 dimensions on one core (memory-bound): past
# this size it would take most of the decision's 1 ms budget (docs/performance.md).
APPROXIMATE_ABOVE = 50_000
# Past this size the exact scan's read of the whole matrix (5 MB here) no longer stays in the
# caches under load; a code scan reads a sixteenth of it (ann.py, docs/performance.md). Below it
# the in-domain evaluation's 7k-example index stays exact.
SCAN_CODES_ABOVE = 10_000
# However few neighbours are asked, at least this many candidates are re-scored: for the nearest
# one or two the approximate order alone would too often miss the true nearest.
_MIN_CANDIDATES = 64
# The cells are learnt once; retrain when the index has grown this much since.
_RETRAIN_GROWTH = 4


@dataclass(frozen=True)
class Snapshot:
    """What searches read: built in one go, never changed after (the visibility masks are a
    cache of values derived from it)."""

    version: int
    matrix: np.ndarray
    ids: np.ndarray
    tenants: np.ndarray
    has_tenants: bool
    keys: list[str]
    # examples x (1 + 2·keys): the weight, then presence per key, then the outcome or 0
    # (labelled.evidence_matrix). One matrix, so that a search gathers its neighbours' rows once:
    # under load each gather of rows at random positions misses the caches
    evidence: np.ndarray
    ann: IvfCandidates | CodeScanCandidates | None
    ann_trained_on: int
    visible: dict[str | None, np.ndarray] = field(default_factory=dict)
    own: dict[str, np.ndarray] = field(default_factory=dict)  # a tenant's own rows, cached as `visible`
    # the matrix's rows as views, for the index's own list once nothing was written meanwhile
    rows: list[np.ndarray] = field(default_factory=list, repr=False)

    @classmethod
    def empty(cls, dim: int) -> Snapshot:
        zeros = np.zeros(0, dtype=object)
        matrix = np.zeros((0, dim), dtype=np.float32, order="F")
        return cls(0, matrix, zeros, zeros, False, [], np.zeros((0, 1)), None, 0)


class LocalIndex:
    kind = "local"

    def __init__(
        self, dim: int, *, approximate_above: int = APPROXIMATE_ABOVE, scan_codes_above: int = SCAN_CODES_ABOVE
    ) -> None:
        self.dim = dim
        self.approximate_above = approximate_above
        self.scan_codes_above = scan_codes_above
        self._rewritten_at = 0  # the version whose write replaced or removed a row: appending is not enough
        self._examples: list[LabelledExample] = []
        self._pos: dict[str, int] = {}
        self._rows: list[np.ndarray] = []
        self._version = 0  # bumped by every write; a snapshot says which version it shows
        self._scheduled = 0  # the newest version a build was started for
        self._snap = Snapshot.empty(dim)
        self._build_lock = threading.Lock()  # one build at a time; a later one includes earlier writes
        self._latest = self._snap  # the newest snapshot built, installed or not

    # -- writes ---------------------------------------------------------------------------
    async def upsert(self, examples: Sequence[LabelledExample], vectors: np.ndarray) -> int:
        written = self.upsert_sync(examples, vectors)
        await self.refresh()
        return written

    def upsert_sync(self, examples: Sequence[LabelledExample], vectors: np.ndarray) -> int:
        """Writes without rebuilding: the next search_sync (or async search) rebuilds."""
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
                self._rewritten_at = self._version + 1
        self._version += 1
        return len(examples)

    async def delete(self, ids: Sequence[str]) -> int:
        drop = {i for i in ids if i in self._pos}
        if not drop:
            return 0
        keep = [n for n, ex in enumerate(self._examples) if ex.id not in drop]
        self._examples = [self._examples[n] for n in keep]
        self._rows = [self._rows[n] for n in keep]
        self._pos = {ex.id: n for n, ex in enumerate(self._examples)}
        self._version += 1
        self._rewritten_at = self._version
        await self.refresh()
        return len(drop)

    async def refresh(self) -> None:
        """Rebuild the snapshot off the event loop; searches use the old one until then."""
        if self._snap.version == self._version:
            return
        job = self._build_job()
        self._install(await asyncio.to_thread(self._build, *job))

    def refresh_sync(self) -> None:
        if self._snap.version != self._version:
            self._install(self._build(*self._build_job()))

    def _build_job(self) -> tuple[int, list[LabelledExample], list[np.ndarray], int]:
        # copied on the event loop: writes happen there, so the copies are consistent
        self._scheduled = self._version
        return self._version, list(self._examples), list(self._rows), self._rewritten_at

    def _install(self, snap: Snapshot) -> None:
        if snap.version <= self._snap.version:
            return
        self._snap = snap
        if snap.version == self._version and snap.rows:
            # the rows become views of the matrix: one copy of the vectors in memory, not two
            self._rows = snap.rows

    def _build(
        self, version: int, examples: list[LabelledExample], rows: list[np.ndarray], rewritten_at: int
    ) -> Snapshot:
        with self._build_lock:
            previous = self._latest
            if previous.version >= version:
                return previous  # a build that started later already holds these writes
            rewritten = rewritten_at > previous.version
            self._latest = build_snapshot(
                self.dim, version, examples, rows, previous, rewritten, self.approximate_above, self.scan_codes_above
            )
            return self._latest

    # -- reads ----------------------------------------------------------------------------
    @property
    def snapshot(self) -> Snapshot:
        """What searches read now (bench/scale.py reads its matrix and cells)."""
        return self._snap

    def similarities(self, vector: np.ndarray) -> np.ndarray:
        self.refresh_sync()
        return _similarities(self._snap, vector, self.dim)

    async def search(self, vector: np.ndarray, k: int, *, tenant: str | None = None) -> Neighbours:
        if self._scheduled < self._version:
            await self.refresh()  # written by upsert_sync and never built (start-up, tools)
        return search_snapshot(self._snap, self.dim, vector, k, tenant)

    def search_sync(self, vector: np.ndarray, k: int, *, tenant: str | None = None) -> Neighbours:
        self.refresh_sync()
        return search_snapshot(self._snap, self.dim, vector, k, tenant)

    async def search_own(self, vector: np.ndarray, k: int, *, tenant: str) -> Neighbours:
        if self._scheduled < self._version:
            await self.refresh()
        return search_own_snapshot(self._snap, vector, k, tenant)

    def search_own_sync(self, vector: np.ndarray, k: int, *, tenant: str) -> Neighbours:
        """The k most similar of `tenant`'s own examples only (the router's second search: a
        tenant's labels are always seen, however many shared examples there are)."""
        self.refresh_sync()
        return search_own_snapshot(self._snap, vector, k, tenant)

    async def count(self) -> int:
        return len(self._examples)

    async def own_examples(self, tenant: str, *, limit: int) -> tuple[list[LabelledExample], np.ndarray]:
        """The tenant's own examples (the latest `limit`) and their vectors."""
        mine = [n for n, ex in enumerate(self._examples) if ex.tenant == tenant][-limit:] if limit > 0 else []
        vectors = np.array([self._rows[n] for n in mine], dtype=np.float32).reshape(len(mine), self.dim)
        return [self._examples[n] for n in mine], vectors

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


def build_snapshot(
    dim: int,
    version: int,
    examples: list[LabelledExample],
    rows: list[np.ndarray],
    previous: Snapshot,
    rewritten: bool,
    approximate_above: int,
    scan_codes_above: int = SCAN_CODES_ABOVE,
) -> Snapshot:
    kind = _candidates_kind(len(rows), approximate_above, scan_codes_above)
    approximate = kind is not None
    if rows:
        # column-major for exact search: a sparse query (the hashing encoder) reads just the
        # columns it touches, and the dense product is faster too (19.6k x 128: 0.17 ms against
        # 0.24 ms row-major, measured 2026-11-30); above the threshold the candidates' index
        # takes the rows, row-major, and the matrix becomes its view
        stacked = np.vstack(rows)
        matrix = stacked if approximate else np.asfortranarray(stacked)
    else:
        matrix = np.zeros((0, dim), dtype=np.float32, order="F")
    tenants = np.array([ex.tenant for ex in examples], dtype=object)
    keys = sorted({k for ex in examples for k in ex.outcomes})
    col = {k: j for j, k in enumerate(keys)}
    outcomes = np.full((len(examples), len(keys)), np.nan, dtype=np.float32)
    for i, ex in enumerate(examples):
        for k, v in ex.outcomes.items():
            outcomes[i, col[k]] = v
    weights = np.array([ex.weight for ex in examples], dtype=np.float64)
    ann, trained_on = _approximate(matrix, kind, previous, rewritten)
    if ann is not None:
        matrix = ann.vectors  # the re-scoring index holds the rows: keep one copy, not two
    return Snapshot(
        version=version,
        matrix=matrix,
        ids=np.array([ex.id for ex in examples], dtype=object),
        tenants=tenants,
        has_tenants=any(t is not None for t in tenants),
        keys=keys,
        evidence=np.hstack([weights[:, None], evidence_matrix(outcomes)]),
        ann=ann,
        ann_trained_on=trained_on,
        rows=list(matrix),
    )


Candidates = IvfCandidates | CodeScanCandidates


def _candidates_kind(n: int, approximate_above: int, scan_codes_above: int) -> type[Candidates] | None:
    if n >= approximate_above:
        return IvfCandidates
    return CodeScanCandidates if n >= scan_codes_above else None


def _approximate(
    matrix: np.ndarray, kind: type[Candidates] | None, previous: Snapshot, rewritten: bool
) -> tuple[Candidates | None, int]:
    """The candidates' index: none below the thresholds; learnt anew after a rewrite, a shrink,
    enough growth or a change of kind; else the previous one with the new rows added, on a copy
    (the previous snapshot may be serving a search with it right now)."""
    n = len(matrix)
    old = previous.ann
    if kind is None:
        return None, 0
    if not isinstance(old, kind) or rewritten or old.size > n or n > _RETRAIN_GROWTH * previous.ann_trained_on:
        return kind(matrix), n
    grown = old.copy()
    grown.add(matrix[old.size :])
    return grown, previous.ann_trained_on


def search_snapshot(snap: Snapshot, dim: int, vector: np.ndarray, k: int, tenant: str | None) -> Neighbours:
    n = len(snap.ids)
    if n == 0 or k <= 0:
        return _no_neighbours(snap)
    query = np.asarray(vector, dtype=np.float32)
    if snap.ann is not None:
        found = _search_approximate(snap, query, k, tenant)
        if found is not None:
            return found
    sims = _similarities(snap, query, dim)
    if snap.has_tenants:
        sims = np.where(_visible(snap, tenant), sims, -np.inf)
    k = min(k, n)
    top = np.argpartition(-sims, k - 1)[:k] if k < n else np.arange(n)
    # ties: lower position first, so results are deterministic
    top = top[np.lexsort((top, -sims[top]))]
    top = top[sims[top] > -np.inf]
    return _neighbours(snap, top, sims[top])


def search_own_snapshot(snap: Snapshot, vector: np.ndarray, k: int, tenant: str) -> Neighbours:
    """Exact: a tenant's rows are few next to the shared ones."""
    rows = _own_rows(snap, tenant)
    if len(rows) == 0 or k <= 0:
        return _no_neighbours(snap)
    sims = snap.matrix[rows] @ np.asarray(vector, dtype=np.float32)
    if k < len(rows):
        part = np.argpartition(-sims, k - 1)[:k]
        rows, sims = rows[part], sims[part]
    order = np.lexsort((rows, -sims))  # ties: lower position first, as search_snapshot
    top = rows[order]
    return _neighbours(snap, top, sims[order])


def _own_rows(snap: Snapshot, tenant: str) -> np.ndarray:
    rows = snap.own.get(tenant)
    if rows is None:
        rows = np.flatnonzero(snap.tenants == tenant) if snap.has_tenants else np.zeros(0, dtype=np.int64)
        if len(snap.own) > 256:
            snap.own.clear()
        snap.own[tenant] = rows
    return rows


def _similarities(snap: Snapshot, vector: np.ndarray, dim: int) -> np.ndarray:
    nz = np.flatnonzero(vector)
    if snap.matrix.flags.f_contiguous and len(nz) < _SPARSE_QUERY_SHARE * dim:
        out: np.ndarray = snap.matrix[:, nz] @ vector[nz]
        return out
    full: np.ndarray = snap.matrix @ vector
    return full


def _visible(snap: Snapshot, tenant: str | None) -> np.ndarray:
    """Which rows `tenant` may see (shared ones and its own), computed once per tenant per
    snapshot: comparing an object array on every search costs more than the search."""
    mask = snap.visible.get(tenant)
    if mask is None:
        mask = (snap.tenants == None) | (snap.tenants == tenant)  # noqa: E711
        if len(snap.visible) > 256:
            snap.visible.clear()
        snap.visible[tenant] = mask
    return mask


def _search_approximate(snap: Snapshot, query: np.ndarray, k: int, tenant: str | None) -> Neighbours | None:
    """Exactly re-scored candidates; None when a tenant filter left too few (search exactly)."""
    assert snap.ann is not None
    if snap.has_tenants:
        # every candidate comes back, to be filtered before the k are kept
        wanted = max(2 * snap.ann.candidates_per_k * k, _MIN_CANDIDATES)
        pos, sims = snap.ann.nearest(query, wanted)
        keep = _visible(snap, tenant)[pos]
        pos, sims = pos[keep], sims[keep]
        if len(pos) < k:
            return None
    else:
        pos, sims = snap.ann.nearest(query, k, max(snap.ann.candidates_per_k * k, _MIN_CANDIDATES))
    if len(sims) > 1 and np.count_nonzero(sims[1:] == sims[:-1]):
        order = np.lexsort((pos, -sims))  # ties: lower position first, as search_snapshot
        pos, sims = pos[order], sims[order]
    return _neighbours(snap, pos[:k], sims[:k])


def _neighbours(snap: Snapshot, top: np.ndarray, sims: np.ndarray) -> Neighbours:
    # the ids are gathered only if asked for (/api/v1/route lists them, a chat request does not):
    # gathering an object array touches every neighbour's string
    rows = snap.evidence[top]
    return Neighbours.from_evidence(snap.ids, sims, rows[:, 0], snap.keys, rows[:, 1:], positions=top)


def _no_neighbours(snap: Snapshot) -> Neighbours:
    return Neighbours.from_evidence([], np.zeros(0), np.zeros(0), snap.keys, np.zeros((0, 2 * len(snap.keys))))


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 3)
