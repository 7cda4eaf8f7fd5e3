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

From `scan_codes_above` shared examples on, exact search (which reads every vector) gives way to a
scan of compact codes, and from `approximate_above` on to an inverted file (ann.py); either proposes
candidates among the shared rows that faiss re-scores exactly against the rows it then holds, so
the similarities are exact and the result is deterministic, and only recall is approximate. A
tenant's own rows are always searched exactly (snapshot.py says why).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import numpy as np

from ..examples.labelled import LabelledExample, Neighbours
from .base import IndexHealth
from .snapshot import (
    APPROXIMATE_ABOVE,
    SCAN_CODES_ABOVE,
    Snapshot,
    build_snapshot,
    search_own_snapshot,
    search_snapshot,
)

__all__ = ["APPROXIMATE_ABOVE", "SCAN_CODES_ABOVE", "LocalIndex"]


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


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 3)
