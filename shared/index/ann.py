"""Approximate nearest-neighbour candidates for a LocalIndex past the exact-search sizes (faiss).

Two kinds, by size (LocalIndex chooses): from SCAN_CODES_ABOVE examples a scan of every row's
4-bit product-quantised code (CodeScanCandidates), from APPROXIMATE_ABOVE an inverted file
(IvfCandidates). Both propose candidates that a flat index of the rows re-scores exactly in the
same faiss call; LocalIndex reads those rows as its matrix.

Why a code scan in the middle (docs/performance.md): a decision reads the whole float32 matrix in an
exact search, 10 MB at 19.6k x 128. Under load, with the rest of the request between two searches,
that read misses the caches every time and cost ~2 ms of the router's ~4.5 ms of CPU per request;
the codes are 32 bytes a row (630 KB), scanned with SIMD lookups, and the exact re-score reads only
the candidates' rows. Recall of the 200 true neighbours among 2 x 200 candidates: 0.965 on
AlpacaEval prompts and starter rows (3 x 200: 0.990, for no APGR gain and a third more rows read
at random in the re-score, the costliest line of a decision at c=1).

Exact search reads every stored vector, so its cost grows with the index: ~3-10 ms a query at
100k examples of 256 dimensions on one core, memory-bound. An inverted file (IVF) splits the
vectors into `nlist` k-means cells and a query reads only the `nprobe` cells nearest to it (a
quarter of them, at most 256). The candidates are re-scored exactly against the float32 rows, so every
similarity it returns is exact; only whether a true neighbour is among the candidates is
approximate (recall@k, measured by `python -m bench.scale` and reported in docs/performance.md).

Why IVF rather than HNSW: at the same recall it answers as fast here, builds several times
faster, takes appends without rebuilding (a new vector joins its nearest cell), and gives the
same result for the same data in any process, because k-means runs from a fixed seed on a fixed
sample and a cell's members are kept in insertion order (an HNSW graph built with several threads
is not reproducible). Vectors are stored as float16: candidates only, half the memory.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Self

import numpy as np

# Searching one query is single-threaded in faiss; one thread also keeps k-means from spinning
# OpenMP workers on a small shared host, and keeps training reproducible.
_THREADS = 1
_SEED = 0
_POINTS_PER_CELL = 40  # training sample per cell; faiss warns below 39
_KMEANS_ITERATIONS = 10


def _faiss() -> Any:
    # faiss (~30 MB of native code) is needed only from SCAN_CODES_ABOVE examples
    import faiss  # type: ignore[import-untyped,unused-ignore]

    faiss.omp_set_num_threads(_THREADS)
    return faiss


class _FaissCandidates:
    """Over rows 0..size-1: a candidate index (`_base`, chosen and trained by the subclasses)
    inside a faiss IndexRefineFlat, whose flat index of the rows themselves re-scores the
    candidates exactly and holds the vectors LocalIndex reads as its matrix (`vectors`), so they
    are stored once. Proposing, re-scoring and ordering run in one call into faiss: as a dozen numpy
    calls they cost twice as much in the serving process, where their code runs cache-cold
    (docs/performance.md)."""

    candidates_per_k = 2  # re-scored per neighbour wanted (twice that when tenants filter)
    dim: int
    _base: Any
    _index: Any
    _size: int

    def _refine_with_rows(self, base: Any, matrix: np.ndarray) -> None:
        self._base = base
        self._params: dict[tuple[int, int], Any] = {}
        self._index = _faiss().IndexRefineFlat(base)
        self.add(matrix)

    def copy(self) -> Self:
        """An independent copy (the same trained state and rows), to add to while this one serves."""
        faiss = _faiss()
        twin = copy.copy(self)
        twin._index = faiss.clone_index(self._index)
        twin._base = faiss.downcast_index(twin._index.base_index)
        twin._params = {}
        return twin

    @property
    def size(self) -> int:
        return self._size  # kept by add(): reading faiss's ntotal through SWIG costs µs per search

    def add(self, rows: np.ndarray) -> None:
        """Append rows; they take the next positions. Never called on an index that serves:
        `vectors` views its storage, which an append may move."""
        if len(rows):
            self._index.add(np.ascontiguousarray(rows, dtype=np.float32))
        self._size = int(self._index.ntotal)

    def nearest(self, vector: np.ndarray, n: int, candidates: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The n most similar of the `candidates` (default n) nearest by their codes, re-scored
        exactly: positions and exact similarities, most similar first (ties in faiss's order).
        faiss keeps only the n: sorting and handing over all the candidates costs as much again
        as re-scoring them."""
        query = np.ascontiguousarray(vector, dtype=np.float32).reshape(1, self.dim)
        # OpenMP's thread count is per calling thread (_faiss sets it), and the index may have
        # been built in another: without this the refine step runs a team that spins for one query
        _faiss()
        n = min(n, self.size)
        sims, found = self._index.search(query, n, params=self._refine_params(n, max(n, candidates or n)))
        pos: np.ndarray = found[0]
        if len(pos) and pos[-1] < 0:  # fewer rows than asked
            keep = pos >= 0
            return pos[keep], sims[0][keep]
        return pos, sims[0]

    def _refine_params(self, n: int, candidates: int) -> Any:
        """faiss's search parameters for `candidates` re-scored per n kept, made once per pair."""
        cache = self._params
        params = cache.get((n, candidates))
        if params is None:
            # faiss asks its candidate index for int(n * k_factor) in float32 arithmetic
            factor = np.float32(candidates / max(n, 1))
            while int(np.float32(n) * factor) < candidates:
                factor = np.nextafter(factor, np.float32(np.inf))
            params = _faiss().IndexRefineSearchParameters(k_factor=float(factor))
            if len(cache) > 64:
                cache.clear()
            cache[(n, candidates)] = params
        return params

    @property
    def vectors(self) -> np.ndarray:
        """The rows, (size x dim) float32, as a read-only view of the flat index's storage that
        keeps this object alive for as long as the view (or a view of it) lives."""
        flat = _faiss().downcast_index(self._index.refine_index)
        n = self.size
        raw = _faiss().rev_swig_ptr(flat.get_xb(), n * self.dim) if n else np.zeros(0, dtype=np.float32)
        view = np.asarray(_Storage(self, raw)).reshape(n, self.dim)
        view.flags.writeable = False
        return view


class _Storage:
    """Exposes a faiss-owned buffer to numpy with a reference to its owner, so that no view
    outlives the memory it reads."""

    def __init__(self, owner: _FaissCandidates, raw: np.ndarray) -> None:
        self.owner = owner
        self.__array_interface__ = raw.__array_interface__


class IvfCandidates(_FaissCandidates):
    """An inverted file: the query reads the rows of its nprobe nearest k-means cells."""

    def __init__(self, matrix: np.ndarray, *, nlist: int | None = None, nprobe: int | None = None) -> None:
        faiss = _faiss()
        n, dim = matrix.shape
        self.dim = dim
        self.nlist = nlist or default_nlist(n)
        self.nprobe = min(self.nlist, nprobe or default_nprobe(self.nlist))
        quantizer = faiss.IndexFlatIP(dim)
        base = faiss.IndexIVFScalarQuantizer(
            quantizer, dim, self.nlist, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT
        )
        base.cp.seed = _SEED
        base.cp.niter = _KMEANS_ITERATIONS
        sample = min(n, self.nlist * _POINTS_PER_CELL)
        picked = np.sort(np.random.default_rng(_SEED).permutation(n)[:sample])
        base.train(np.ascontiguousarray(matrix[picked], dtype=np.float32))
        base.nprobe = self.nprobe
        self._quantizer: Any = quantizer  # faiss does not own it from Python: keep it alive
        self._refine_with_rows(base, matrix)

    def copy(self) -> Self:
        twin = super().copy()
        twin._base.nprobe = self.nprobe
        twin._quantizer = None  # the clone owns its own quantizer
        return twin


def default_nlist(n: int) -> int:
    """~2·sqrt(n) cells: at 100k a cell holds ~160 vectors."""
    return max(1, min(n, int(2 * math.sqrt(n))))


def default_nprobe(nlist: int) -> int:
    """Read a quarter of the cells, at most 256. Real prompts spread more than synthetic ones:
    on the 14k starter prompts a 10% scan found only 78% of the 200 true neighbours, 40% found
    94.5% (docs/performance.md). The cap keeps 1M examples within a few ms."""
    return max(min(16, nlist), min(256, nlist // 4))


class CodeScanCandidates(_FaissCandidates):
    """Candidate positions from a scan of every row's product-quantised code: sub-vectors of 2
    dimensions (1 when the dimension is odd), 4 bits each, in faiss's fast-scan layout (32 bytes a
    row at 128 dimensions). Deterministic: the codebooks are learnt by k-means from faiss's fixed
    seed on one thread, from a fixed sample."""

    _TRAIN_SAMPLE = 20_000

    def __init__(self, matrix: np.ndarray) -> None:
        faiss = _faiss()
        n, dim = matrix.shape
        self.dim = dim
        subvectors = dim // 2 if dim % 2 == 0 else dim
        base = faiss.IndexPQFastScan(dim, subvectors, 4, faiss.METRIC_INNER_PRODUCT)
        picked = np.sort(np.random.default_rng(_SEED).permutation(n)[: self._TRAIN_SAMPLE])
        base.train(np.ascontiguousarray(matrix[picked], dtype=np.float32))
        self._refine_with_rows(base, matrix)
