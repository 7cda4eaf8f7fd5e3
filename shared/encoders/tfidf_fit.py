"""Fitting a tfidf-svd encoder's idf and basis from example texts.

Two callers: `python -m shared.cli encoder-fit` (and evaluate / calibrate), which fit the shipped
encoder with scikit-learn's randomized SVD (devtools/encoder_fit.py, so the shipped state stays
reproducible), and a tenant's own space (routing/tenant_space.py), fitted in the container on the
tenant's prompts with scipy's exact truncated SVD, since scikit-learn is not in the image.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .base import normalise_rows
from .tfidf_svd import TfidfSvdEncoder, ngram_hashes

if TYPE_CHECKING:
    import scipy.sparse as sp

# (tf-idf matrix, k, seed) -> the top-k right singular vectors as rows (k x columns)
SvdSolver = Callable[["sp.csr_matrix", int, int], np.ndarray]


def exact_svd(matrix: sp.csr_matrix, k: int, seed: int) -> np.ndarray:
    """scipy's ARPACK truncated SVD: a few hundred to a few thousand prompts take well under a
    second, and the start vector is seeded so a refit gives the same basis. ARPACK wants fewer
    directions than the matrix's smaller side; a matrix that small is decomposed whole."""
    from scipy.sparse.linalg import svds  # only where a fit runs: no start-up cost for the app

    if k >= min(matrix.shape):
        full: np.ndarray = np.linalg.svd(matrix.toarray(), full_matrices=False)[2][:k]
        return full
    v0 = np.random.default_rng(seed).standard_normal(min(matrix.shape))
    _, s, vt = svds(matrix.astype(np.float64), k=k, v0=v0)
    out: np.ndarray = vt[np.argsort(-s)]
    return out


# one text's n-gram buckets and their counts (sorted buckets, as np.unique gives them)
NgramRow = tuple[np.ndarray, np.ndarray]


def ngram_rows(texts: Sequence[str], *, n_bits: int = 18, ngram_max: int = 2) -> list[NgramRow]:
    """Each text's n-gram buckets and counts: the hashing, done once for several fits and encodes
    of the same texts (a tenant's space fits three encoders on its prompts)."""
    mask = np.uint32((1 << n_bits) - 1)
    return [
        np.unique(np.asarray(ngram_hashes(t, ngram_max), dtype=np.uint32) & mask, return_counts=True) for t in texts
    ]


def fit_tfidf_svd(texts: Sequence[str], *, n_bits: int = 18, ngram_max: int = 2, **options: Any) -> TfidfSvdEncoder:
    """Learn idf and the SVD basis from example texts (`options` as `fit_rows`)."""
    rows = ngram_rows(texts, n_bits=n_bits, ngram_max=ngram_max)
    return fit_rows(rows, n_bits=n_bits, ngram_max=ngram_max, **options)


def fit_rows(
    rows: Sequence[NgramRow],
    *,
    dim: int = 128,
    n_bits: int = 18,
    ngram_max: int = 2,
    max_vocab: int = 32_768,
    min_df: int = 2,
    seed: int = 0,
    solver: SvdSolver = exact_svd,
) -> TfidfSvdEncoder:
    """Learn idf and the SVD basis from texts already hashed (`ngram_rows`, with the same n_bits and
    ngram_max)."""
    import scipy.sparse as sp  # only where a fit runs: no start-up cost for the app

    n_buckets = 1 << n_bits
    df = np.zeros(n_buckets, dtype=np.float64)
    for buckets, _ in rows:
        df[buckets] += 1
    n = len(rows)
    idf = (np.log((1.0 + n) / (1.0 + df)) + 1.0).astype(np.float32)
    kept = np.flatnonzero(df >= min_df)
    if len(kept) > max_vocab:
        kept = kept[np.argsort(-df[kept], kind="stable")[:max_vocab]]
    kept = np.sort(kept)
    # the tf-idf matrix over all buckets (for the row norms), restricted to the kept columns
    indptr, indices, data = [0], [], []
    for buckets, counts in rows:
        w = (1.0 + np.log(counts)) * idf[buckets]
        norm = np.sqrt(w @ w)
        indices.append(buckets.astype(np.int64))
        data.append((w / norm if norm > 0 else w).astype(np.float32))
        indptr.append(indptr[-1] + len(buckets))
    matrix = sp.csr_matrix((np.concatenate(data), np.concatenate(indices), np.asarray(indptr)), shape=(n, n_buckets))[
        :, kept
    ]
    k = min(dim, max(1, min(matrix.shape) - 1))
    vt = solver(matrix, k, seed)
    # the state is kept in float16 (half the size); fitting returns exactly what load() gives
    return TfidfSvdEncoder(
        idf=idf.astype(np.float16),
        kept_buckets=kept,
        components=vt.T.astype(np.float16),
        n_bits=n_bits,
        ngram_max=ngram_max,
    )


def encode_rows(encoder: TfidfSvdEncoder, rows: Sequence[NgramRow]) -> np.ndarray:
    """What `encoder.encode` gives for the texts these rows were hashed from, in one sparse
    product instead of a Python loop per text (the rows' n_bits must be the encoder's)."""
    import scipy.sparse as sp  # only where a fit runs: no start-up cost for the app

    kept = encoder.kept_buckets
    indptr, indices, data = [0], [], []
    for buckets, counts in rows:
        at = np.searchsorted(kept, buckets)
        hit = (at < len(kept)) & (kept[np.minimum(at, len(kept) - 1)] == buckets)
        indices.append(at[hit])
        data.append((1.0 + np.log(counts[hit])) * encoder.idf[buckets[hit]].astype(np.float64))
        indptr.append(indptr[-1] + int(hit.sum()))
    weights = sp.csr_matrix(
        (np.concatenate(data), np.concatenate(indices), np.asarray(indptr)), shape=(len(rows), len(kept))
    )
    out: np.ndarray = normalise_rows(np.asarray(weights @ encoder.components.astype(np.float64)))
    return out
