"""One rule for which rows a search returns, shared by the index and a tenant's own space."""

from __future__ import annotations

import numpy as np


def top_k(rows: np.ndarray, sims: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k most similar `rows`, most similar first; ties, at the cut too, go to the lower
    position: which of equal rows come back never depends on how the partition fell."""
    if k <= 0:
        return rows[:0], sims[:0]
    if k < len(rows):
        # the k-th largest similarity, then every row at or above it: a partition of the values
        # alone takes half the time of an argpartition over the 19,649 starter examples
        # (docs/performance.md, ninth session)
        last = len(rows) - k
        cut = np.partition(sims, last)[last]
        part = np.flatnonzero(sims >= cut)
        if len(part) < k:  # NaNs, which a partition puts above every number: rank them below instead
            return top_k(rows, _nan_last(sims), k)
        if len(part) > k:  # a tie across the cut
            at_cut = sims[part] == cut
            above, tied = part[~at_cut], part[at_cut]
            part = np.concatenate([above, tied[np.argsort(rows[tied], kind="stable")][: k - len(above)]])
        rows, sims = rows[part], sims[part]
    elif np.isnan(sims).any():  # every row comes back: the NaNs last, and weighing nothing
        sims = _nan_last(sims)
    order = np.lexsort((rows, -sims))
    return rows[order], sims[order]


def _nan_last(sims: np.ndarray) -> np.ndarray:
    """A NaN similarity (a corrupt vector) as -inf: ranked after every number, weighing nothing."""
    out: np.ndarray = np.where(np.isnan(sims), -np.inf, sims)
    return out
