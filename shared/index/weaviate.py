"""The production example index: Weaviate collection `LLMDocument` (HNSW, cosine, own vectors).

Talks to Weaviate through the async weaviate-client v4: REST for schema, readiness and backups,
gRPC for batch writes, near_vector search, deletes and counts. The 15 properties are in
`PROPERTIES` (docs/weaviate.md explains each). Every failure to reach Weaviate surfaces as
`IndexUnavailable`, which the router turns into "route on priors".

The client connects lazily and reconnects on the next call after a failure, so a replica that
started while Weaviate was down recovers by itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
from weaviate.classes.config import Configure, Property, VectorDistances
from weaviate.classes.data import DataObject
from weaviate.classes.query import Filter, MetadataQuery, Sort
from weaviate.client import WeaviateAsyncClient
from weaviate.collections import CollectionAsync
from weaviate.exceptions import WeaviateBaseError

from ..config import Settings, secret_value
from ..examples.labelled import LabelledExample, Neighbour
from .base import IndexHealth, IndexUnavailable, PageTooDeep
from .weaviate_connection import ConnectionTarget, build_client, grpc_health_problem
from .weaviate_schema import (
    NEIGHBOUR_PROPERTIES,
    PROPERTIES,
    PROPERTY_NAMES,
    VECTOR_NAME,
    SchemaMismatch,
    from_properties,
    outcomes_of,
    schema_differences,
    to_properties,
    visible_to,
)

log = logging.getLogger(__name__)

BATCH_SIZE = 200
# Weaviate's default QUERY_MAXIMUM_RESULTS: no filtered query pages past offset + limit = 10,000,
# so a tenant's examples beyond it are read in pages keyed on `created_at`
QUERY_PAGE = 10_000
DELETE_CHUNK = 1000


class WeaviateIndex:
    kind = "weaviate"

    def __init__(
        self,
        client: WeaviateAsyncClient,
        *,
        dim: int,
        encoder_name: str,
        collection: str = "LLMDocument",
        batch_size: int = BATCH_SIZE,
    ) -> None:
        self.client = client
        self.dim = dim
        self.encoder_name = encoder_name
        self.collection_name = collection
        self.batch_size = batch_size
        self._lock = asyncio.Lock()
        self._schema_ok = False

    # set by from_settings: where gRPC is, for the health probe's own gRPC check
    target: ConnectionTarget | None = None
    api_key: str | None = None
    timeout_s: float = 2.0

    @classmethod
    def from_settings(cls, s: Settings, *, dim: int, encoder_name: str) -> WeaviateIndex:
        index = cls(build_client(s), dim=dim, encoder_name=encoder_name, collection=s.weaviate_collection)
        index.target = ConnectionTarget.from_settings(s)
        index.api_key = secret_value(s.weaviate_api_key)
        index.timeout_s = s.weaviate_timeout_s
        return index

    @property
    def description(self) -> str:
        # names the vector space: vectors from another encoder must never be compared
        return f"LLM Router labelled routing examples. vectors: {self.encoder_name}"

    # -- connection and schema ---------------------------------------------------------------
    async def _collection(self) -> CollectionAsync[Any, Any]:
        if not self.client.is_connected() or not self._schema_ok:
            async with self._lock:
                if not self.client.is_connected():
                    try:
                        await self.client.connect()
                    except (WeaviateBaseError, OSError) as exc:
                        raise IndexUnavailable(f"cannot connect to Weaviate: {exc}") from exc
                if not self._schema_ok:
                    await self._ensure_schema_locked()
        return self.client.collections.use(self.collection_name)

    async def ensure_schema(self) -> str:
        """Create the collection when missing; returns "created" or "exists". Raises
        SchemaMismatch (incompatible collection) or IndexUnavailable (cannot reach Weaviate)."""
        async with self._lock:
            if not self.client.is_connected():
                try:
                    await self.client.connect()
                except (WeaviateBaseError, OSError) as exc:
                    raise IndexUnavailable(f"cannot connect to Weaviate: {exc}") from exc
            return await self._ensure_schema_locked()

    async def _ensure_schema_locked(self) -> str:
        try:
            exists = await self.client.collections.exists(self.collection_name)
            if not exists:
                await self.client.collections.create(
                    self.collection_name,
                    description=self.description,
                    properties=[
                        Property(
                            name=p.name,
                            data_type=p.data_type,
                            description=p.why,
                            tokenization=p.tokenization,
                            index_searchable=p.searchable if p.tokenization is not None else None,
                        )
                        for p in PROPERTIES
                    ],
                    vector_config=Configure.Vectors.self_provided(
                        name=VECTOR_NAME,
                        vector_index_config=Configure.VectorIndex.hnsw(distance_metric=VectorDistances.COSINE),
                    ),
                    # shared examples have tenant = null; filtering on null needs this index
                    inverted_index_config=Configure.inverted_index(index_null_state=True),
                )
                self._schema_ok = True
                log.info("created Weaviate collection %s", self.collection_name)
                return "created"
            config = await self.client.collections.use(self.collection_name).config.get()
        except WeaviateBaseError as exc:
            raise IndexUnavailable(f"Weaviate schema check failed: {exc}") from exc
        problems = schema_differences(config, self.description)
        if problems:
            raise SchemaMismatch(
                f"Weaviate collection {self.collection_name} exists but is incompatible: " + "; ".join(problems)
            )
        self._schema_ok = True
        return "exists"

    # -- writes --------------------------------------------------------------------------------
    async def seed_when_created(
        self, starter: Sequence[LabelledExample], vectors: Callable[[], Awaitable[np.ndarray]] | None
    ) -> None:
        """Create the collection when it is missing and, if `vectors` is given, fill it with the
        starter examples. Never fails the start: the router answers on priors meanwhile."""
        try:
            if await self.ensure_schema() == "created" and starter and vectors is not None:
                await self.upsert(starter, await vectors())
                log.info("seeded Weaviate with %d starter examples", len(starter))
        except IndexUnavailable as exc:
            # readiness says degraded until it is back
            log.warning("Weaviate is unavailable at start: %s", exc)
        except SchemaMismatch as exc:
            log.error("%s", exc)

    async def upsert(self, examples: Sequence[LabelledExample], vectors: np.ndarray) -> int:
        if len(examples) != len(vectors):
            raise ValueError("examples and vectors differ in length")
        if len(examples) and vectors.shape[1] != self.dim:
            raise ValueError(f"vector dim {vectors.shape[1]} != index dim {self.dim}")
        coll = await self._collection()
        written = 0
        for start in range(0, len(examples), self.batch_size):
            chunk = list(examples[start : start + self.batch_size])
            rows = np.asarray(vectors[start : start + self.batch_size], dtype=np.float32)
            try:
                created = await self._created_at(coll, [ex.id for ex in chunk])
                now = datetime.now(UTC)
                objects = [
                    DataObject(
                        uuid=ex.id,
                        properties=to_properties(ex, created.get(ex.id, now), now),
                        vector={VECTOR_NAME: row.tolist()},
                    )
                    for ex, row in zip(chunk, rows, strict=True)
                ]
                result = await coll.data.insert_many(objects)
            except WeaviateBaseError as exc:
                raise IndexUnavailable(f"Weaviate batch write failed: {exc}") from exc
            if result.has_errors:
                first = next(iter(result.errors.values()))
                raise IndexUnavailable(f"Weaviate rejected {len(result.errors)} object(s): {first.message}")
            written += len(chunk)
        return written

    async def _created_at(self, coll: CollectionAsync[Any, Any], ids: list[str]) -> dict[str, datetime]:
        found = await coll.query.fetch_objects(
            filters=Filter.by_id().contains_any(ids), limit=len(ids), return_properties=["created_at"]
        )
        out: dict[str, datetime] = {}
        for o in found.objects:
            value = o.properties.get("created_at")
            if isinstance(value, datetime):
                out[str(o.uuid)] = value
        return out

    async def delete(self, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        coll = await self._collection()
        deleted = 0
        try:
            for start in range(0, len(ids), DELETE_CHUNK):
                chunk = list(ids[start : start + DELETE_CHUNK])
                res = await coll.data.delete_many(where=Filter.by_id().contains_any(chunk))
                deleted += int(res.successful)
        except WeaviateBaseError as exc:
            raise IndexUnavailable(f"Weaviate delete failed: {exc}") from exc
        return deleted

    # -- reads ---------------------------------------------------------------------------------
    async def search(self, vector: np.ndarray, k: int, *, tenant: str | None = None) -> list[Neighbour]:
        return await self._near(vector, k, visible_to(tenant))

    async def search_own(self, vector: np.ndarray, k: int, *, tenant: str) -> list[Neighbour]:
        """The k most similar of `tenant`'s own examples only: the router's second search, so a
        tenant's labels are always seen however many shared examples there are."""
        return await self._near(vector, k, Filter.by_property("tenant").equal(tenant))

    async def _near(self, vector: np.ndarray, k: int, filters: Any) -> list[Neighbour]:
        if k <= 0:
            return []
        coll = await self._collection()
        try:
            res = await coll.query.near_vector(
                near_vector=np.asarray(vector, dtype=np.float32).tolist(),
                target_vector=VECTOR_NAME,
                limit=k,
                filters=filters,
                return_metadata=MetadataQuery(distance=True),
                return_properties=NEIGHBOUR_PROPERTIES,
            )
        except WeaviateBaseError as exc:
            raise IndexUnavailable(f"Weaviate search failed: {exc}") from exc
        out = []
        for o in res.objects:
            distance = o.metadata.distance if o.metadata.distance is not None else 1.0
            props = o.properties
            out.append(
                Neighbour(
                    id=str(o.uuid),
                    similarity=1.0 - float(distance),
                    outcomes=outcomes_of(props),
                    weight=float(props.get("weight") or 1.0),  # type: ignore[arg-type]
                )
            )
        return out

    async def count(self) -> int:
        coll = await self._collection()
        try:
            res = await coll.aggregate.over_all(total_count=True)
        except WeaviateBaseError as exc:
            raise IndexUnavailable(f"Weaviate count failed: {exc}") from exc
        return int(res.total_count or 0)

    async def own_examples(self, tenant: str, *, limit: int) -> tuple[list[LabelledExample], np.ndarray]:
        """The latest `limit` of the tenant's own examples, oldest first, with their vectors (a
        tenant's prior and space are fitted on them, routing/tenant_prior.py).

        Newest first in pages of QUERY_PAGE, each older than the last one's oldest `created_at`:
        an offset cannot pass Weaviate's QUERY_MAXIMUM_RESULTS, and the cursor (`after`) takes no
        filter. A write batch (at most `batch_size`) shares one `created_at`, so the examples of a
        full page's oldest instant are read whole by one more query. Only Equal, LessThan and And:
        every Weaviate the client supports has them (ContainsNone needs 1.33)."""
        if limit <= 0:
            return [], np.zeros((0, self.dim), dtype=np.float32)
        coll = await self._collection()
        mine = Filter.by_property("tenant").equal(tenant)
        found: list[Any] = []
        older_than: datetime | None = None
        while len(found) < limit:
            wanted = min(QUERY_PAGE, limit - len(found))
            page = await self._newest(
                coll,
                mine if older_than is None else mine & Filter.by_property("created_at").less_than(older_than),
                wanted,
            )
            oldest = page[-1].properties.get("created_at") if page else None
            if len(page) < wanted or wanted < QUERY_PAGE or not isinstance(oldest, datetime):
                found.extend(page)  # all read, or all wanted (an example without created_at sorts last)
                break
            found.extend(o for o in page if o.properties.get("created_at") != oldest)
            found.extend(await self._newest(coll, mine & Filter.by_property("created_at").equal(oldest), QUERY_PAGE))
            older_than = oldest
        kept = [o for o in reversed(found[:limit]) if len(o.vector.get(VECTOR_NAME) or ()) == self.dim]
        vectors = np.array([o.vector[VECTOR_NAME] for o in kept], dtype=np.float32).reshape(len(kept), self.dim)
        return [from_properties(str(o.uuid), o.properties) for o in kept], vectors

    async def _newest(self, coll: CollectionAsync[Any, Any], filters: Any, limit: int) -> list[Any]:
        try:
            res = await coll.query.fetch_objects(
                limit=limit,
                filters=filters,
                sort=Sort.by_property("created_at", ascending=False),
                return_properties=list(PROPERTY_NAMES),
                include_vector=[VECTOR_NAME],
            )
        except WeaviateBaseError as exc:
            raise IndexUnavailable(f"Weaviate listing of a tenant's examples failed: {exc}") from exc
        return list(res.objects)

    async def list(self, *, limit: int = 100, offset: int = 0, tenant: str | None = None) -> list[LabelledExample]:
        coll = await self._collection()
        try:
            res = await coll.query.fetch_objects(
                limit=limit, offset=offset, filters=visible_to(tenant), return_properties=list(PROPERTY_NAMES)
            )
        except WeaviateBaseError as exc:
            if "query maximum results exceeded" in str(exc):  # the server's ceiling, whatever it is set to
                raise PageTooDeep(
                    f"offset + limit ({offset + limit}) is past what this Weaviate serves by offset "
                    "(its QUERY_MAXIMUM_RESULTS, 10,000 by default)"
                ) from exc
            raise IndexUnavailable(f"Weaviate list failed: {exc}") from exc
        return [from_properties(str(o.uuid), o.properties) for o in res.objects]

    async def iterate(self, *, tenant: str | None = None) -> AsyncIterator[LabelledExample]:
        """Every example visible to `tenant`, by cursor (no offset limit; for export)."""
        coll = await self._collection()
        try:
            async for o in coll.iterator(return_properties=list(PROPERTY_NAMES), cache_size=500):
                ex = from_properties(str(o.uuid), o.properties)
                if ex.tenant is None or ex.tenant == tenant:
                    yield ex
        except WeaviateBaseError as exc:
            raise IndexUnavailable(f"Weaviate export failed: {exc}") from exc

    async def health(self) -> IndexHealth:
        """REST (schema, readiness, backups) and gRPC (search, writes) are checked separately:
        Weaviate behind an HTTPS ingress can answer REST while its gRPC port is unreachable, and
        then every search fails. The detail says which of the two fails."""
        t0 = time.perf_counter()
        grpc_check = asyncio.create_task(self._grpc_problem()) if self.target is not None else None
        rest_problem: str | None = None
        try:
            if not self.client.is_connected() or not self._schema_ok:
                await self._collection()
            if not await self.client.is_ready():
                rest_problem = "not ready"
        except (IndexUnavailable, WeaviateBaseError, OSError) as exc:
            rest_problem = str(exc)
        except SchemaMismatch as exc:
            rest_problem = str(exc)
        grpc_problem = await grpc_check if grpc_check is not None else None
        parts = []
        if self.target is not None:
            t = self.target
            rest = f"{'https' if t.http_secure else 'http'}://{t.http_host}:{t.http_port}"
            grpc = f"{t.grpc_host}:{t.grpc_port}{' (TLS)' if t.grpc_secure else ''}"
            parts.append(f"REST {rest} {'failing: ' + rest_problem if rest_problem else 'ok'}")
            parts.append(f"gRPC {grpc} {'failing: ' + grpc_problem if grpc_problem else 'ok'}")
        elif rest_problem:
            parts.append(rest_problem)
        state = "ready" if not (rest_problem or grpc_problem) else "not ready"
        detail = f"{self.collection_name}: {state}" + (f" ({'; '.join(parts)})" if parts else "")
        return IndexHealth(ok=not (rest_problem or grpc_problem), detail=detail, latency_ms=_ms(t0))

    async def _grpc_problem(self) -> str | None:
        assert self.target is not None
        return await grpc_health_problem(self.target, self.api_key, self.timeout_s)

    async def close(self) -> None:
        await self.client.close()


# --- mapping ------------------------------------------------------------------------------------


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 3)
