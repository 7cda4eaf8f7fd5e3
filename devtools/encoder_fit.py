"""Fitting the shipped tfidf-svd encoder (python -m shared.cli encoder-fit, and evaluate /
calibrate, which fit on their training split) with scikit-learn's randomized SVD, as the shipped
state was built: scikit-learn is in requirements-local.txt, not in the container."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.utils.extmath import randomized_svd

from shared.encoders import tfidf_fit
from shared.encoders.tfidf_svd import TfidfSvdEncoder


def _randomized(matrix: sp.csr_matrix, k: int, seed: int) -> np.ndarray:
    _, _, vt = randomized_svd(matrix, k, n_iter=5, random_state=seed)
    out: np.ndarray = vt
    return out


def fit_tfidf_svd(texts: Sequence[str], **options: Any) -> TfidfSvdEncoder:
    """Learn idf and the SVD basis from example texts (options as `tfidf_fit.fit_tfidf_svd`)."""
    return tfidf_fit.fit_tfidf_svd(texts, solver=_randomized, **options)
