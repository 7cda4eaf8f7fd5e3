"""One rule for which rows a search returns, shared by the index and a tenant's own space."""

from __future__ import annotations

import numpy as np


def top_k(rows: np.ndarray, sims: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k most similar `rows`, most similar first; ties, at the cut too, go to the lower
    position: which of equal rows come back never depends on how the partition fell."""
    if k <= 0:
        return rows[:0], sims[:0]
    if k < len(rows):
        part = np.argpartition(-sims, k - 1)[:k]
        cut = sims[part].min()
        if np.count_nonzero(sims == cut) > np.count_nonzero(sims[part] == cut):  # a tie across the cut
            above = np.flatnonzero(sims > cut)
            tied = np.flatnonzero(sims == cut)
            part = np.concatenate([above, tied[np.argsort(rows[tied], kind="stable")][: k - len(above)]])
        rows, sims = rows[part], sims[part]
    order = np.lexsort((rows, -sims))
    return rows[order], sims[order]
