"""The index protocol: labelled examples stored with their vectors, searched by cosine."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from ..examples.labelled import LabelledExample, Neighbour


@dataclass(frozen=True)
class IndexHealth:
    ok: bool
    detail: str
    latency_ms: float


class IndexUnavailable(Exception):
    """The index cannot answer now (down, slow, erroring). Routing falls back to priors."""


class PageTooDeep(Exception):
    """A listing asked for rows deeper than the index serves by offset (Weaviate's
    QUERY_MAXIMUM_RESULTS): the caller's request, not an outage."""


@runtime_checkable
class ExampleIndex(Protocol):
    kind: str

    async def upsert(self, examples: Sequence[LabelledExample], vectors: np.ndarray) -> int:
        """Insert or replace by example id; returns how many were written."""
        ...

    async def search(self, vector: np.ndarray, k: int, *, tenant: str | None = None) -> Sequence[Neighbour]:
        """The k most similar examples visible to `tenant` (shared ones plus its own), most
        similar first. A `Neighbours` (arrays) or a list of Neighbour objects."""
        ...

    async def delete(self, ids: Sequence[str]) -> int: ...

    async def count(self) -> int: ...

    async def list(self, *, limit: int = 100, offset: int = 0, tenant: str | None = None) -> list[LabelledExample]: ...

    async def health(self) -> IndexHealth: ...

    async def close(self) -> None: ...
