"""Getting labelled examples into an index and back out.

`import_csv` / `export_csv`: the CSV format of the routing data (a prompt column and one outcome
column per model, bool or 0..1), into any ExampleIndex, in encoded batches.
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..encoders.base import AsyncEncoder, Encoder
from ..index.base import ExampleIndex
from .labelled import LabelledExample, read_labelled_csv, write_labelled_csv

IMPORT_BATCH = 500


async def encode(encoder: Encoder | AsyncEncoder, texts: Sequence[str]) -> np.ndarray:
    if isinstance(encoder, AsyncEncoder):
        return await encoder.aencode(list(texts))
    return await asyncio.to_thread(encoder.encode, list(texts))


def _count_rows(path: Path) -> int | None:
    if str(path).endswith(".gz"):
        return None
    with open(path, encoding="utf-8", newline="") as fh:
        return max(0, sum(1 for _ in csv.reader(fh)) - 1)


async def import_csv(
    index: ExampleIndex,
    encoder: Encoder | AsyncEncoder,
    path: Path,
    model_columns: Iterable[str] | None = None,
    rename: dict[str, str] | None = None,
    progress: bool = True,
    *,
    prompt_column: str = "prompt",
    category: str | None = None,
    tenant: str | None = None,
    batch_size: int = IMPORT_BATCH,
) -> int:
    """Encode and upsert every row; returns how many examples were written. Importing the same
    file twice writes the same ids (uuid5 of file name and prompt), so nothing is duplicated."""
    rows = read_labelled_csv(path, prompt_column=prompt_column, model_columns=model_columns, rename=rename)
    bar: Any = None
    if progress:
        from tqdm import tqdm  # a local/CLI dependency (requirements-local.txt), not the container's

        bar = tqdm(total=_count_rows(path), unit="ex", desc=Path(path).name)
    written = 0
    batch: list[LabelledExample] = []

    async def flush() -> None:
        nonlocal written
        if not batch:
            return
        vectors = await encode(encoder, [ex.content for ex in batch])
        written += await index.upsert(batch, vectors)
        if bar is not None:
            bar.update(len(batch))
        batch.clear()

    try:
        for row in rows:
            if category is not None or tenant is not None:
                # id="" gives the example its id in the tenant's namespace
                row = dataclasses.replace(  # noqa: PLW2901
                    row, category=category or row.category, tenant=tenant or row.tenant, id=""
                )
            batch.append(row)
            if len(batch) >= batch_size:
                await flush()
        await flush()
    finally:
        if bar is not None:
            bar.close()
    return written


@runtime_checkable
class IterableIndex(Protocol):
    def iterate(self, *, tenant: str | None = None) -> AsyncIterator[LabelledExample]: ...


async def all_examples(index: ExampleIndex, *, tenant: str | None = None, page: int = 1000) -> list[LabelledExample]:
    if isinstance(index, IterableIndex):
        return [ex async for ex in index.iterate(tenant=tenant)]
    out: list[LabelledExample] = []
    offset = 0
    while True:
        rows = await index.list(limit=page, offset=offset, tenant=tenant)
        out.extend(rows)
        if len(rows) < page:
            return out
        offset += page


async def export_csv(index: ExampleIndex, path: Path, *, tenant: str | None = None) -> int:
    """Write the examples visible to `tenant` (shared ones when None) as a labelled CSV."""
    examples = [ex for ex in await all_examples(index, tenant=tenant) if ex.content]
    return await asyncio.to_thread(_write_csv, examples, path)


def _write_csv(examples: list[LabelledExample], path: Path) -> int:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        return write_labelled_csv(examples, fh)  # type: ignore[arg-type]
