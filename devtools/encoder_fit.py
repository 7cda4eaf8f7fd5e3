"""Fitting the tfidf-svd encoder's idf and basis (python -m shared.cli encoder-fit, and evaluate /
calibrate, which fit on their training split). A development tool: scipy and scikit-learn are in
requirements-local.txt, not in the container, which only loads the fitted state."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.utils.extmath import randomized_svd

from shared.encoders.tfidf_svd import TfidfSvdEncoder, ngram_hashes


def fit_tfidf_svd(
    texts: Sequence[str],
    *,
    dim: int = 128,
    n_bits: int = 18,
    ngram_max: int = 2,
    max_vocab: int = 32_768,
    min_df: int = 2,
    seed: int = 0,
) -> TfidfSvdEncoder:
    """Learn idf and the SVD basis from example texts."""

    n_buckets = 1 << n_bits
    mask = np.uint32(n_buckets - 1)
    rows = [
        np.unique(np.asarray(ngram_hashes(t, ngram_max), dtype=np.uint32) & mask, return_counts=True) for t in texts
    ]
    df = np.zeros(n_buckets, dtype=np.float64)
    for buckets, _ in rows:
        df[buckets] += 1
    n = len(texts)
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
    _, _, vt = randomized_svd(matrix, k, n_iter=5, random_state=seed)
    # the state is kept in float16 (half the size); fitting returns exactly what load() gives
    return TfidfSvdEncoder(
        idf=idf.astype(np.float16),
        kept_buckets=kept,
        components=vt.T.astype(np.float16),
        n_bits=n_bits,
        ngram_max=ngram_max,
    )
