"""The encoder protocol."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Encoder(Protocol):
    """Turns texts into float32 vectors, one row per text, each row of unit L2 norm.

    `name` identifies the vector space: vectors from encoders with different names must never
    be compared (the index stores it and refuses a mismatch).
    """

    name: str
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


@runtime_checkable
class SingleTextEncoder(Protocol):
    """An encoder that also encodes one text without stacking a batch of one (the router encodes
    one prompt per decision; stacking it is a fifth of the default encoder's time)."""

    def encode_one(self, text: str) -> np.ndarray: ...


@runtime_checkable
class AsyncEncoder(Protocol):
    """An encoder that calls a remote service (embeddings API)."""

    name: str
    dim: int

    async def aencode(self, texts: Sequence[str]) -> np.ndarray: ...


def normalise_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    out: np.ndarray = (matrix / norms).astype(np.float32, copy=False)
    return out
