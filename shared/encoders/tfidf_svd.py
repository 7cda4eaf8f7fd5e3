"""The default encoder: hashed word n-gram tf-idf projected onto an SVD basis learned from the
labelled examples. No download; ~0.06 ms a prompt; numpy only at request time.

1. Word unigrams and bigrams are hashed (crc32, stable across processes) into 2^18 buckets,
   weighted by sublinear tf (1 + log tf) times an idf learned from the examples, L2-normalised.
2. The row is projected onto a TruncatedSVD basis (256 dimensions by default) learned from the
   examples over their most frequent buckets, and L2-normalised again.

Why not raw hashing into a small dense vector: collisions and the missing idf cost ~0.04 apgr on
the routing evaluation, and a random projection loses as much; the learned basis keeps the
quality of the sparse tf-idf neighbours in a vector small enough for Weaviate
(docs/routing-quality.md). The basis and idf are the encoder's *state*: fitted once (offline,
`python -m shared.cli encoder-fit`) and shipped, because every vector in an index must come from
the same state. `name` carries a digest of the state so that vectors from different states are
never compared.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

_TOKEN = re.compile(r"\w+|[^\w\s]")


def ngram_hashes(text: str, ngram_max: int) -> list[int]:
    tokens = _TOKEN.findall(text.lower())
    crc = zlib.crc32
    out = [crc(t.encode()) for t in tokens]
    for n in range(2, ngram_max + 1):
        prefix = f"{n}\x01"
        out.extend(crc((prefix + " ".join(tokens[i : i + n])).encode()) for i in range(len(tokens) - n + 1))
    return out


@functools.lru_cache(maxsize=4)
def bucket_counts(text: str, ngram_max: int, n_bits: int) -> tuple[tuple[int, int], ...]:
    """The text's n-gram buckets and their counts, in bucket order. Kept for the last few texts:
    a tenant with a space of its own (routing/tenant_space.py) encodes each prompt twice, with
    the shared encoder and its own, and hashing a long prompt's n-grams is most of the cost. The
    last four prompts stay in this process's memory until four others are encoded."""
    counts: dict[int, int] = {}
    mask = (1 << n_bits) - 1
    for h in ngram_hashes(text, ngram_max):
        b = h & mask
        counts[b] = counts.get(b, 0) + 1
    return tuple(sorted(counts.items()))


class TfidfSvdEncoder:
    def __init__(
        self,
        *,
        idf: np.ndarray,
        kept_buckets: np.ndarray,
        components: np.ndarray,
        n_bits: int = 18,
        ngram_max: int = 2,
    ) -> None:
        self.n_bits = n_bits
        self.ngram_max = ngram_max
        self.idf = np.asarray(idf, dtype=np.float32)
        self.kept_buckets = np.asarray(kept_buckets, dtype=np.int64)
        # kept in float16, as stored: half the memory; the few rows a prompt uses are widened per call
        self.components = np.ascontiguousarray(components, dtype=np.float16)
        self.dim = int(self.components.shape[1])
        digest = hashlib.sha256(
            self.components.astype(np.float32).tobytes()[:1_000_000] + self.idf.tobytes()
        ).hexdigest()[:10]
        self.name = f"tfidf-svd-w{ngram_max}-b{n_bits}-d{self.dim}-{digest}"
        # request-time lookups in plain Python: per kept bucket, its basis row and idf. A prompt
        # has tens of n-grams, and a dict read per n-gram costs less than the half-dozen numpy
        # calls (gather, mask, log, norm) it replaces, whose code goes cold between requests
        self._basis_row = {int(b): r for r, b in enumerate(self.kept_buckets.tolist())}
        self._basis_idf = self.idf[self.kept_buckets].astype(np.float64).tolist()

    # -- request time ---------------------------------------------------------------------------
    def basis_weights(self, text: str) -> tuple[list[int], list[float]]:
        """The text's tf-idf weights (sublinear tf times idf) on the basis rows it touches, in
        bucket order. N-grams outside the basis are dropped here: the first L2 normalisation of
        the sparse row scales every weight alike, and the projected vector is normalised again,
        so it cancels."""
        rows: list[int] = []
        weights: list[float] = []
        row_of, idf, log = self._basis_row, self._basis_idf, math.log
        for b, count in bucket_counts(text, self.ngram_max, self.n_bits):
            r = row_of.get(b)
            if r is not None:
                rows.append(r)
                weights.append((1.0 + log(count)) * idf[r])
        return rows, weights

    def support(self, text: str, enough: int | None = None) -> int:
        """How many of the text's n-grams the basis knows: what its vector rests on (a word or two
        for a greeting). Counting stops at `enough`, so a long prompt costs a few lookups; the
        hashing is the one `encode_one` just did, cached."""
        row_of, found = self._basis_row, 0
        for b, _ in bucket_counts(text, self.ngram_max, self.n_bits):
            if b in row_of:
                found += 1
                if found == enough:
                    break
        return found

    def encode_one(self, text: str) -> np.ndarray:
        rows, weights = self.basis_weights(text)
        if not rows:
            return np.zeros(self.dim, dtype=np.float32)
        vec: np.ndarray = np.array(weights, dtype=np.float32) @ self.components[rows].astype(np.float32)
        norm = math.sqrt(float(vec @ vec))
        return vec / np.float32(norm) if norm > 0 else vec

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self.encode_one(t) for t in texts])

    # -- state ------------------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            path,
            idf=self.idf.astype(np.float16),
            kept_buckets=self.kept_buckets.astype(np.int32),
            components=self.components.astype(np.float16),
            meta=np.asarray([self.n_bits, self.ngram_max], dtype=np.int32),
        )

    @classmethod
    def load(cls, path: Path) -> TfidfSvdEncoder:
        with np.load(path) as state:
            n_bits, ngram_max = (int(x) for x in state["meta"])
            return cls(
                idf=state["idf"],
                kept_buckets=state["kept_buckets"],
                components=state["components"],
                n_bits=n_bits,
                ngram_max=ngram_max,
            )

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "dim": self.dim, "buckets": 1 << self.n_bits, "basis_rows": len(self.kept_buckets)}
