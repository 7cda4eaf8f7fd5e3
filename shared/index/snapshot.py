"""What a LocalIndex search reads: an immutable snapshot of its arrays, and the searches over it.

The shared rows and the tenants' rows are kept apart. The shared search (the router's first, which
asks for shared examples alone) reads the shared rows only: exactly below `scan_codes_above` of
them, and from there on through a candidate index (ann.py) that faiss re-scores exactly. A
tenant's rows are searched exactly (`search_own_snapshot`, the router's second search), and a
search that may see both merges the two. When the tenant rows sat among the shared ones, the shared
search had to over-fetch and filter them out: with 200 of a tenant's rows beside 19.6k shared ones
that took a learning-curve decision from 0.38 to 1.05 ms p50, and with 14k (MMLU's learned half)
past the over-fetch, to an exact scan of every row (docs/performance.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..examples.labelled import LabelledExample, Neighbours, evidence_matrix
from ..examples.nearest import top_k
from .ann import CodeScanCandidates, IvfCandidates

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

Candidates = IvfCandidates | CodeScanCandidates


@dataclass(frozen=True)
class Snapshot:
    """What searches read: built in one go, never changed after. Every vector is held once: the
    shared rows in `matrix` (a view of the candidate index's rows when there is one), a tenant's in
    `tenant_matrix`."""

    version: int
    # the shared rows' vectors, the shared search's matrix: row j is position `shared_rows[j]`, or
    # position j when there are no tenant rows (then every row is shared and `shared_rows` is None)
    matrix: np.ndarray
    ids: np.ndarray
    tenants: np.ndarray
    has_tenants: bool
    keys: list[str]
    # examples x (1 + 2·keys): the weight, then presence per key, then the outcome or 0
    # (labelled.evidence_matrix). One matrix, so that a search gathers its neighbours' rows once:
    # under load each gather of rows at random positions misses the caches
    evidence: np.ndarray
    ann: Candidates | None
    ann_trained_on: int
    shared_rows: np.ndarray | None = None
    # the tenants' rows grouped by tenant (by position within one), their vectors in that order,
    # and each tenant's slice of both: a tenant's own search reads one contiguous block, no gather
    tenant_rows: np.ndarray | None = None
    tenant_matrix: np.ndarray | None = None
    tenant_slices: dict[str, slice] = field(default_factory=dict)
    # every row's vector by position, as views of the two matrices, for the index's own list once
    # nothing was written meanwhile
    rows: list[np.ndarray] = field(default_factory=list, repr=False)

    @classmethod
    def empty(cls, dim: int) -> Snapshot:
        zeros = np.zeros(0, dtype=object)
        matrix = np.zeros((0, dim), dtype=np.float32, order="F")
        return cls(0, matrix, zeros, zeros, False, [], np.zeros((0, 1)), None, 0)


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
    tenants = np.array([ex.tenant for ex in examples], dtype=object)
    has_tenants = any(t is not None for t in tenants)
    stacked = np.vstack(rows) if rows else np.zeros((0, dim), dtype=np.float32)
    shared = tenant_rows = tenant_matrix = None
    slices: dict[str, slice] = {}
    held = stacked
    if has_tenants:
        shared = np.flatnonzero(tenants == None)  # noqa: E711
        tenant_rows, slices = _grouped_by_tenant(tenants)
        held, tenant_matrix = stacked[shared], np.ascontiguousarray(stacked[tenant_rows])
    kind = _candidates_kind(len(held), approximate_above, scan_codes_above)
    ann, trained_on = _approximate(held, shared, kind, previous, rewritten)
    # with a candidate index its rows are the matrix (one copy, not two); without, column-major
    # for exact search: a sparse query (the hashing encoder) reads just the columns it touches,
    # and the dense product is faster too (19.6k x 128: 0.17 ms against 0.24 ms row-major,
    # measured 2026-11-30)
    matrix = ann.vectors if ann is not None else np.asfortranarray(held)
    keys = sorted({k for ex in examples for k in ex.outcomes})
    col = {k: j for j, k in enumerate(keys)}
    outcomes = np.full((len(examples), len(keys)), np.nan, dtype=np.float32)
    for i, ex in enumerate(examples):
        for k, v in ex.outcomes.items():
            outcomes[i, col[k]] = v
    weights = np.array([ex.weight for ex in examples], dtype=np.float64)
    return Snapshot(
        version=version,
        matrix=matrix,
        ids=np.array([ex.id for ex in examples], dtype=object),
        tenants=tenants,
        has_tenants=has_tenants,
        keys=keys,
        evidence=np.hstack([weights[:, None], evidence_matrix(outcomes)]),
        ann=ann,
        ann_trained_on=trained_on,
        shared_rows=shared,
        tenant_rows=tenant_rows,
        tenant_matrix=tenant_matrix,
        tenant_slices=slices,
        rows=_views_by_position(matrix, shared, tenant_matrix, tenant_rows),
    )


def _grouped_by_tenant(tenants: np.ndarray) -> tuple[np.ndarray, dict[str, slice]]:
    """The tenant rows' positions grouped by tenant, in position order within each, and each
    tenant's slice of them."""
    rows = np.flatnonzero(tenants != None)  # noqa: E711
    names = tenants[rows].astype(str)
    order = np.argsort(names, kind="stable")
    rows, names = rows[order], names[order]
    tenant, starts = np.unique(names, return_index=True)  # names are sorted: each one's first row
    ends = np.r_[starts[1:], len(names)]
    return rows, {str(t): slice(int(a), int(b)) for t, a, b in zip(tenant, starts, ends, strict=True)}


def _views_by_position(
    matrix: np.ndarray, shared: np.ndarray | None, tenant_matrix: np.ndarray | None, tenant_rows: np.ndarray | None
) -> list[np.ndarray]:
    if shared is None or tenant_matrix is None or tenant_rows is None:
        return list(matrix)
    views: list[np.ndarray | None] = [None] * (len(shared) + len(tenant_rows))
    for positions, vectors in ((shared, matrix), (tenant_rows, tenant_matrix)):
        for i, row in zip(positions.tolist(), vectors, strict=True):
            views[i] = row
    return [row for row in views if row is not None]  # every position is filled: none is dropped


def _candidates_kind(n: int, approximate_above: int, scan_codes_above: int) -> type[Candidates] | None:
    if n >= approximate_above:
        return IvfCandidates
    return CodeScanCandidates if n >= scan_codes_above else None


def _approximate(
    held: np.ndarray, shared: np.ndarray | None, kind: type[Candidates] | None, previous: Snapshot, rewritten: bool
) -> tuple[Candidates | None, int]:
    """The candidates' index over the shared rows `held` (at positions `shared`, None: every row):
    none below the thresholds; learnt anew after a rewrite, a shrink, enough growth or a change of
    kind; else the previous one with the new shared rows added, on a copy (the previous snapshot
    may be serving a search with it right now)."""
    if kind is None:
        return None, 0
    n = len(held)
    old = previous.ann
    if not isinstance(old, kind) or rewritten or old.size > n or n > _RETRAIN_GROWTH * previous.ann_trained_on:
        return kind(held), n
    before = np.arange(old.size) if previous.shared_rows is None else previous.shared_rows[: old.size]
    now = np.arange(n) if shared is None else shared
    if not np.array_equal(now[: old.size], before):  # a shared row now sits elsewhere
        return kind(held), n
    grown = old.copy()
    grown.add(held[old.size :])
    return grown, previous.ann_trained_on


def search_snapshot(snap: Snapshot, dim: int, vector: np.ndarray, k: int, tenant: str | None) -> Neighbours:
    """The k most similar rows `tenant` may see: the shared ones, and its own."""
    if len(snap.ids) == 0 or k <= 0:
        return _no_neighbours(snap)
    query = np.asarray(vector, dtype=np.float32)
    pos, sims = _shared_top(snap, query, k, dim)
    if tenant is not None and snap.has_tenants:
        rows, own = _own_similarities(snap, query, tenant)
        if len(rows):
            pos, sims = top_k(np.concatenate([pos, rows]), np.concatenate([sims, own]), k)
    return _neighbours(snap, pos, sims)


def search_own_snapshot(snap: Snapshot, vector: np.ndarray, k: int, tenant: str) -> Neighbours:
    """Exact: a tenant's rows are few next to the shared ones."""
    rows, sims = _own_similarities(snap, np.asarray(vector, dtype=np.float32), tenant)
    if len(rows) == 0 or k <= 0:
        return _no_neighbours(snap)
    return _neighbours(snap, *top_k(rows, sims, k))


def _shared_top(snap: Snapshot, query: np.ndarray, k: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """The k most similar shared rows: positions and exact similarities, most similar first."""
    if snap.ann is not None:
        pos, sims = snap.ann.nearest(query, k, max(snap.ann.candidates_per_k * k, _MIN_CANDIDATES))
        if len(sims) > 1 and np.count_nonzero(sims[1:] == sims[:-1]):
            order = np.lexsort((pos, -sims))  # ties: lower position first, as the exact search
            pos, sims = pos[order], sims[order]
        pos, sims = pos[:k], sims[:k]
    else:
        all_sims = similarities(snap.matrix, query, dim)
        pos, sims = top_k(np.arange(len(all_sims)), all_sims, k)
    # the shared rows' positions rise with theirs, so the order (ties included) is kept
    return (pos if snap.shared_rows is None else snap.shared_rows[pos]), sims


def _own_similarities(snap: Snapshot, query: np.ndarray, tenant: str) -> tuple[np.ndarray, np.ndarray]:
    block = snap.tenant_slices.get(tenant)
    if block is None or snap.tenant_rows is None or snap.tenant_matrix is None:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    return snap.tenant_rows[block], snap.tenant_matrix[block] @ query


def similarities(matrix: np.ndarray, vector: np.ndarray, dim: int) -> np.ndarray:
    """Every row's dot product with `vector`."""
    nz = np.flatnonzero(vector)
    if matrix.flags.f_contiguous and len(nz) < _SPARSE_QUERY_SHARE * dim:
        out: np.ndarray = matrix[:, nz] @ vector[nz]
        return out
    full: np.ndarray = matrix @ vector
    return full


def _neighbours(snap: Snapshot, top: np.ndarray, sims: np.ndarray) -> Neighbours:
    # the ids are gathered only if asked for (/api/v1/route lists them, a chat request does not):
    # gathering an object array touches every neighbour's string
    rows = snap.evidence[top]
    return Neighbours.from_evidence(snap.ids, sims, rows[:, 0], snap.keys, rows[:, 1:], positions=top)


def _no_neighbours(snap: Snapshot) -> Neighbours:
    return Neighbours.from_evidence([], np.zeros(0), np.zeros(0), snap.keys, np.zeros((0, 2 * len(snap.keys))))
