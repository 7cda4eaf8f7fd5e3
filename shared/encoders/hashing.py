"""The default encoder: feature hashing of word n-grams. No download, no fitting, ~30 µs a prompt.

Stable across processes and machines (crc32, not Python's salted hash), so vectors written to
Weaviate by one replica are comparable with queries encoded by another.
"""

from __future__ import annotations

import math
import re
import zlib
from collections import Counter
from collections.abc import Sequence

import numpy as np

_TOKEN = re.compile(r"[^\W_]+|[^\w\s]", re.UNICODE)


class HashingEncoder:
    def __init__(self, dim: int = 1024, ngram_max: int = 2) -> None:
        if dim <= 0:
            raise ValueError("dim must be positive")
        self.dim = dim
        self.ngram_max = ngram_max
        self.name = f"hashing-w{ngram_max}-d{dim}-v1"

    def features(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """Sparse (indices, values) of one text, L2-normalised; the index uses it directly."""
        tokens = _TOKEN.findall(text.lower())
        grams: Counter[str] = Counter(tokens)
        for n in range(2, self.ngram_max + 1):
            grams.update(" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
        if not grams:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        acc: dict[int, float] = {}
        dim = self.dim
        for gram, count in grams.items():
            h = zlib.crc32(gram.encode("utf-8"))
            idx = h % dim
            # the sign bit keeps colliding features from only ever adding up
            weight = (1.0 + math.log(count)) * (1.0 if (h >> 31) & 1 else -1.0)
            acc[idx] = acc.get(idx, 0.0) + weight
        idx_arr = np.fromiter(acc.keys(), dtype=np.int64, count=len(acc))
        val_arr = np.fromiter(acc.values(), dtype=np.float32, count=len(acc))
        norm = float(np.linalg.norm(val_arr))
        if norm > 0:
            val_arr /= norm
        return idx_arr, val_arr

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            idx, val = self.features(text)
            out[row, idx] = val
        return out
