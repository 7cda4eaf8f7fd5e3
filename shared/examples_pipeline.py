"""Getting labelled examples into the index and back out, and learning from feedback.

- `import_csv` / `export_csv`: the CSV format of shared/data/routing-eval (a prompt column and
  one outcome column per model, bool or 0..1), into any ExampleIndex, in encoded batches.
- `FeedbackExamples`: a feedback row with a score for a logged request becomes a labelled
  example (label_source "feedback", owned by the request's tenant). It runs off the request
  path (the feedback timer), de-duplicated by request id: the example id is
  uuid5("feedback", request_id), so repeated feedback or two replicas processing the same row
  rewrite one example.

Where the prompt comes from (see docs/weaviate.md, "Feedback to examples"):
request_log.prompt_text exists only with LOG_PROMPTS=true. Otherwise the service hands each
answered request to `FeedbackExamples.remember()`, which keeps it in the PromptStore (the
cache: Redis or memory) for FEEDBACK_PROMPT_TTL_S: the prompt's vector always, its text only
when STORE_PROMPT_TEXT is on and the tenant is listed in STORE_PROMPT_TEXT_TENANTS. An example
made without text has empty `content` and still routes (by its vector); it is left out of
exports.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import dataclasses
import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import orjson

from .cache.base import KeyValueCache
from .config import Settings
from .encoders.base import AsyncEncoder, Encoder
from .index.base import ExampleIndex
from .routing.examples import LabelledExample, example_id, read_labelled_csv, write_labelled_csv
from .store.db import Database

log = logging.getLogger(__name__)

IMPORT_BATCH = 500
FEEDBACK_SOURCE = "feedback"


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
                row = dataclasses.replace(row, category=category or row.category, tenant=tenant or row.tenant)  # noqa: PLW2901
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


# --- feedback -> examples -------------------------------------------------------------------------


@dataclass(frozen=True)
class FeedbackRow:
    id: int
    request_id: str
    tenant: str | None
    score: float
    model: str | None  # the feedback's model, else the model that answered
    prompt_text: str | None = None  # from request_log (LOG_PROMPTS=true only)


class FeedbackSource(Protocol):
    async def pending(self, limit: int) -> list[FeedbackRow]: ...

    async def mark_processed(self, ids: Sequence[int]) -> None: ...


class MemoryFeedbackSource:
    def __init__(self) -> None:
        self.rows: list[FeedbackRow] = []
        self.processed: set[int] = set()

    def add(self, row: FeedbackRow) -> None:
        self.rows.append(row)

    async def pending(self, limit: int) -> list[FeedbackRow]:
        return [r for r in self.rows if r.id not in self.processed][:limit]

    async def mark_processed(self, ids: Sequence[int]) -> None:
        self.processed.update(ids)


class PostgresFeedbackSource:
    """Reads the `feedback` table (written by POST /api/v1/feedback) joined to request_log."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def pending(self, limit: int) -> list[FeedbackRow]:
        await self.db.ensure_schema()
        async with self.db.connection() as conn:
            cur = await conn.execute(
                "SELECT f.id, f.request_id, f.tenant, f.score, COALESCE(f.model, r.chosen_model), r.prompt_text"
                " FROM feedback f LEFT JOIN request_log r ON r.id = f.request_id"
                " WHERE f.processed_at IS NULL ORDER BY f.id LIMIT %s",
                (limit,),
            )
            rows = await cur.fetchall()
        return [FeedbackRow(int(r[0]), r[1], r[2], float(r[3]), r[4], r[5]) for r in rows]

    async def mark_processed(self, ids: Sequence[int]) -> None:
        if not ids:
            return
        async with self.db.connection() as conn:
            await conn.execute("UPDATE feedback SET processed_at = now() WHERE id = ANY(%s)", (list(ids),))


@dataclass(frozen=True)
class KeptPrompt:
    tenant: str | None
    text: str | None
    vector: np.ndarray | None


class PromptStore:
    """Prompts of answered requests, kept for FEEDBACK_PROMPT_TTL_S so feedback can label them."""

    def __init__(self, cache: KeyValueCache, ttl_s: int) -> None:
        self.cache = cache
        self.ttl_s = ttl_s

    @staticmethod
    def key(request_id: str) -> str:
        return f"feedback-prompt:{request_id}"

    async def keep(self, request_id: str, tenant: str | None, text: str | None, vector: np.ndarray | None) -> None:
        body = {
            "tenant": tenant,
            "text": text,
            "vector": base64.b64encode(np.asarray(vector, dtype=np.float32).tobytes()).decode()
            if vector is not None
            else None,
        }
        await self.cache.set(self.key(request_id), orjson.dumps(body), self.ttl_s)

    async def get(self, request_id: str) -> KeptPrompt | None:
        raw = await self.cache.get(self.key(request_id))
        if raw is None:
            return None
        body = orjson.loads(raw)
        vec = body.get("vector")
        vector = np.frombuffer(base64.b64decode(vec), dtype=np.float32) if vec else None
        return KeptPrompt(body.get("tenant"), body.get("text"), vector)


def prompt_text_allowed(settings: Settings, tenant: str | None) -> bool:
    if not settings.store_prompt_text:
        return False
    allowed = {t.strip() for t in settings.store_prompt_text_tenants.split(",") if t.strip()}
    return "*" in allowed or (tenant or "") in allowed


@dataclass
class FeedbackRunResult:
    rows: int = 0
    examples: int = 0
    skipped: int = 0


class FeedbackExamples:
    def __init__(
        self,
        settings: Settings,
        source: FeedbackSource,
        prompts: PromptStore,
        index: ExampleIndex,
        encoder: Encoder | AsyncEncoder,
    ) -> None:
        self.settings = settings
        self.source = source
        self.prompts = prompts
        self.index = index
        self.encoder = encoder

    async def remember(self, request_id: str, tenant: str | None, prompt: str, vector: np.ndarray | None) -> None:
        """Called by the service after answering: keep what feedback will need, as allowed."""
        if not self.settings.feedback_to_examples:
            return
        text = prompt if prompt_text_allowed(self.settings, tenant) else None
        if vector is None:
            vector = (await encode(self.encoder, [prompt]))[0]
        try:
            await self.prompts.keep(request_id, tenant, text, vector)
        except Exception as exc:  # the cache being down must never fail a request
            log.warning("could not keep the prompt for feedback: %s", type(exc).__name__)

    async def process(self, limit: int = 500) -> FeedbackRunResult:
        result = FeedbackRunResult()
        if not self.settings.feedback_to_examples:
            return result
        rows = await self.source.pending(limit)
        result.rows = len(rows)
        latest: dict[str, FeedbackRow] = {}
        for row in rows:  # ordered by id: the newest feedback on a request wins
            latest[row.request_id] = row
        examples: list[LabelledExample] = []
        vectors: list[np.ndarray] = []
        to_encode: list[int] = []
        for row in latest.values():
            made = await self._example(row)
            if made is None:
                result.skipped += 1
                continue
            ex, vec = made
            if vec is None:
                to_encode.append(len(examples))
            examples.append(ex)
            vectors.append(vec if vec is not None else np.zeros(0, dtype=np.float32))
        if to_encode:
            encoded = await encode(self.encoder, [examples[i].content for i in to_encode])
            for i, row_vec in zip(to_encode, encoded, strict=True):
                vectors[i] = row_vec
        if examples:
            # an index outage raises here, before anything is marked: the rows are retried
            result.examples = await self.index.upsert(examples, np.vstack(vectors).astype(np.float32))
        await self.source.mark_processed([r.id for r in rows])
        return result

    async def _example(self, row: FeedbackRow) -> tuple[LabelledExample, np.ndarray | None] | None:
        if not row.model:
            return None
        kept = await self.prompts.get(row.request_id)
        allowed = prompt_text_allowed(self.settings, row.tenant)
        text = (kept.text if kept else None) or row.prompt_text
        text = text if allowed else None
        vector = kept.vector if kept is not None and kept.vector is not None else None
        if vector is not None and len(vector) != self.encoder.dim:
            vector = None  # kept under another encoder: re-encode from text if we may
        if vector is None and not text:
            return None
        ex = LabelledExample(
            id=example_id(FEEDBACK_SOURCE, row.request_id),
            content=text or "",
            outcomes={row.model: float(row.score)},
            label_source="feedback",
            source=FEEDBACK_SOURCE,
            tenant=row.tenant,
            source_request_id=row.request_id,
        )
        return ex, vector


def feedback_examples(ctx: Any) -> FeedbackExamples:
    """The process's feeder, built on first use from the context's index and encoder."""
    feeder: FeedbackExamples | None = ctx.extras.get("feedback_examples")
    if feeder is None:
        from .cache.memory import MemoryCache

        source = ctx.extras.get("feedback_source") or MemoryFeedbackSource()
        prompts = ctx.extras.get("prompt_store") or PromptStore(
            ctx.cache or MemoryCache(), ctx.settings.feedback_prompt_ttl_s
        )
        feeder = FeedbackExamples(ctx.settings, source, prompts, ctx.index, ctx.encoder)
        ctx.extras["feedback_examples"] = feeder
    return feeder


async def run_feedback_examples(ctx: Any) -> FeedbackRunResult:
    """The feedback timer's body: one pass over unprocessed feedback."""
    result = await feedback_examples(ctx).process()
    if result.rows:
        log.info("feedback to examples: %d rows, %d examples, %d skipped", result.rows, result.examples, result.skipped)
    return result


async def on_feedback_timer(past_due: bool) -> None:
    from .context import get_context

    await run_feedback_examples(await get_context())
