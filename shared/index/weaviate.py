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
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

import numpy as np
import weaviate
from weaviate.classes.config import Configure, DataType, Property, Tokenization, VectorDistances
from weaviate.classes.data import DataObject
from weaviate.classes.init import AdditionalConfig, Auth, Timeout
from weaviate.classes.query import Filter, MetadataQuery
from weaviate.client import WeaviateAsyncClient
from weaviate.collections import CollectionAsync
from weaviate.exceptions import WeaviateBaseError

from ..config import Settings, secret_value
from ..routing.examples import LabelledExample, Neighbour
from ..tokens import estimate_text_tokens
from .base import IndexHealth, IndexUnavailable

log = logging.getLogger(__name__)

VECTOR_NAME = "default"
BATCH_SIZE = 200
DELETE_CHUNK = 1000


@dataclass(frozen=True)
class PropertySpec:
    name: str
    data_type: DataType
    why: str
    # FIELD tokenization makes equality filters exact (tenant, ids); None keeps the default
    tokenization: Tokenization | None = None
    searchable: bool = False


# Exactly 15 properties. The per-model outcomes are two parallel arrays (model_ids[i] scored
# model_scores[i]) because Weaviate has no map type and the set of models changes over time.
PROPERTIES: tuple[PropertySpec, ...] = (
    PropertySpec(
        "content",
        DataType.TEXT,
        "the prompt text; re-encoded when the encoder changes, and exported",
        Tokenization.WORD,
        True,
    ),
    PropertySpec(
        "category", DataType.TEXT, "subject area (e.g. MMLU subject), for evaluation slices", Tokenization.FIELD
    ),
    PropertySpec(
        "task_type", DataType.TEXT, "kind of task (qa, code, chat...), for evaluation slices", Tokenization.FIELD
    ),
    PropertySpec(
        "language", DataType.TEXT, "prompt language, so multilingual gaps can be measured", Tokenization.FIELD
    ),
    PropertySpec("token_count", DataType.INT, "estimated prompt tokens, to compare like-sized prompts"),
    PropertySpec(
        "model_ids",
        DataType.TEXT_ARRAY,
        "outcome keys (model id or tier:<name>) scored on this prompt",
        Tokenization.FIELD,
    ),
    PropertySpec("model_scores", DataType.NUMBER_ARRAY, "outcome 0..1 for model_ids[i]: the kNN evidence"),
    PropertySpec(
        "best_model", DataType.TEXT, "the highest-scoring key, for quick inspection and filters", Tokenization.FIELD
    ),
    PropertySpec(
        "label_source", DataType.TEXT, "benchmark / feedback / manual: how the label was made", Tokenization.FIELD
    ),
    PropertySpec(
        "source", DataType.TEXT, "dataset or file it came from; part of the deterministic id", Tokenization.FIELD
    ),
    PropertySpec(
        "source_request_id",
        DataType.TEXT,
        "the logged request a feedback label came from (de-duplication)",
        Tokenization.FIELD,
    ),
    PropertySpec("tenant", DataType.TEXT, "owner tenant; null means shared with every tenant", Tokenization.FIELD),
    PropertySpec("weight", DataType.NUMBER, "how much this example counts in the kNN average"),
    PropertySpec("created_at", DataType.DATE, "first written; kept across re-imports"),
    PropertySpec("updated_at", DataType.DATE, "last written"),
)
PROPERTY_NAMES = tuple(p.name for p in PROPERTIES)
NEIGHBOUR_PROPERTIES = ["model_ids", "model_scores", "weight"]


class SchemaMismatch(Exception):
    """The collection exists but cannot serve this router; the message says what differs."""


@dataclass(frozen=True)
class ConnectionTarget:
    http_host: str
    http_port: int
    http_secure: bool
    grpc_host: str
    grpc_port: int
    grpc_secure: bool

    @classmethod
    def from_settings(cls, s: Settings) -> ConnectionTarget:
        if not s.weaviate_url:
            raise ValueError("WEAVIATE_URL is not set")
        url = urlparse(s.weaviate_url if "://" in s.weaviate_url else f"https://{s.weaviate_url}")
        secure = url.scheme == "https"
        host = url.hostname or "localhost"
        port = url.port or (443 if secure else 8080)
        grpc_secure = secure if s.weaviate_grpc_secure is None else s.weaviate_grpc_secure
        return cls(host, port, secure, s.weaviate_grpc_host or host, s.weaviate_grpc_port, grpc_secure)


def build_client(s: Settings) -> WeaviateAsyncClient:
    t = ConnectionTarget.from_settings(s)
    key = secret_value(s.weaviate_api_key)
    return weaviate.use_async_with_custom(
        http_host=t.http_host,
        http_port=t.http_port,
        http_secure=t.http_secure,
        grpc_host=t.grpc_host,
        grpc_port=t.grpc_port,
        grpc_secure=t.grpc_secure,
        auth_credentials=Auth.api_key(key) if key else None,
        additional_config=AdditionalConfig(
            timeout=Timeout(
                init=s.weaviate_timeout_s,
                query=s.weaviate_timeout_s,
                insert=s.weaviate_insert_timeout_s,
            )
        ),
        # the init checks call pypi.org for a version warning and ping gRPC; readiness is ours
        skip_init_checks=True,
    )


async def grpc_health_problem(t: ConnectionTarget, api_key: str | None, timeout_s: float) -> str | None:
    """None when Weaviate's gRPC health service answers SERVING, else what went wrong.

    A channel of its own, so gRPC is checked even when REST (which the client needs to connect)
    is down, and without the client's private ping."""
    import grpc
    from weaviate.proto.v1 import health_weaviate_pb2

    address = f"{t.grpc_host}:{t.grpc_port}"
    channel = grpc.aio.secure_channel(address, grpc.ssl_channel_credentials()) if t.grpc_secure else None
    channel = channel or grpc.aio.insecure_channel(address)
    try:
        check = channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_weaviate_pb2.WeaviateHealthCheckRequest.SerializeToString,
            response_deserializer=health_weaviate_pb2.WeaviateHealthCheckResponse.FromString,
        )
        metadata = (("authorization", f"Bearer {api_key}"),) if api_key else None
        res = await check(health_weaviate_pb2.WeaviateHealthCheckRequest(), timeout=timeout_s, metadata=metadata)
    except grpc.aio.AioRpcError as exc:
        return f"{exc.code().name}: {exc.details() or ''}".strip().rstrip(":")
    finally:
        await channel.close()
    if res.status != health_weaviate_pb2.WeaviateHealthCheckResponse.SERVING:
        return f"status {health_weaviate_pb2.WeaviateHealthCheckResponse.ServingStatus.Name(res.status)}"
    return None


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
        if k <= 0:
            return []
        coll = await self._collection()
        try:
            res = await coll.query.near_vector(
                near_vector=np.asarray(vector, dtype=np.float32).tolist(),
                target_vector=VECTOR_NAME,
                limit=k,
                filters=visible_to(tenant),
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
                    outcomes=_outcomes(props),
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

    async def list(self, *, limit: int = 100, offset: int = 0, tenant: str | None = None) -> list[LabelledExample]:
        coll = await self._collection()
        try:
            res = await coll.query.fetch_objects(
                limit=limit, offset=offset, filters=visible_to(tenant), return_properties=list(PROPERTY_NAMES)
            )
        except WeaviateBaseError as exc:
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


def visible_to(tenant: str | None) -> Any:
    shared = Filter.by_property("tenant").is_none(True)
    if tenant is None:
        return shared
    return shared | Filter.by_property("tenant").equal(tenant)


def to_properties(ex: LabelledExample, created_at: datetime, updated_at: datetime) -> dict[str, Any]:
    keys = sorted(ex.outcomes)
    props: dict[str, Any] = {
        "content": ex.content,
        "category": ex.category,
        "task_type": ex.task_type,
        "language": ex.language,
        "token_count": estimate_text_tokens(ex.content),
        "model_ids": keys,
        "model_scores": [float(ex.outcomes[k]) for k in keys],
        "best_model": ex.best_model,
        "label_source": ex.label_source,
        "source": ex.source,
        "source_request_id": ex.source_request_id,
        "tenant": ex.tenant,
        "weight": float(ex.weight),
        "created_at": created_at,
        "updated_at": updated_at,
    }
    # absent, not empty: a null tenant is how "shared" is stored and filtered
    return {k: v for k, v in props.items() if v is not None}


def _outcomes(props: dict[str, Any]) -> dict[str, float]:
    ids = props.get("model_ids") or []
    scores = props.get("model_scores") or []
    return {str(k): float(v) for k, v in zip(ids, scores, strict=False)}


def from_properties(uuid: str, props: dict[str, Any]) -> LabelledExample:
    def text(name: str) -> str | None:
        value = props.get(name)
        return str(value) if value is not None else None

    return LabelledExample(
        id=uuid,
        content=str(props.get("content") or ""),
        outcomes=_outcomes(props),
        label_source=text("label_source") or "benchmark",
        source=text("source") or "weaviate",
        category=text("category"),
        task_type=text("task_type"),
        language=text("language"),
        tenant=text("tenant"),
        weight=float(props.get("weight") or 1.0),
        source_request_id=text("source_request_id"),
    )


def schema_differences(config: Any, description: str) -> list[str]:
    """What an existing collection's config lacks for this router, one line per difference."""
    problems: list[str] = []
    have = {p.name: p for p in config.properties}
    for spec in PROPERTIES:
        prop = have.get(spec.name)
        if prop is None:
            problems.append(f"property {spec.name} ({spec.data_type.value}) is missing")
            continue
        if prop.data_type != spec.data_type:
            problems.append(f"property {spec.name} is {prop.data_type.value}, expected {spec.data_type.value}")
        elif spec.tokenization == Tokenization.FIELD and prop.tokenization != Tokenization.FIELD:
            got = prop.tokenization.value if prop.tokenization else None
            problems.append(f"property {spec.name} has tokenization {got}, expected field")
    extra = sorted(set(have) - set(PROPERTY_NAMES))
    if extra:
        problems.append(f"unexpected properties: {', '.join(extra)}")
    vectors = config.vector_config or {}
    vc = vectors.get(VECTOR_NAME)
    if vc is None:
        names = ", ".join(sorted(vectors)) or "none (legacy unnamed vector)"
        problems.append(f"named vector {VECTOR_NAME!r} is missing (has: {names})")
    else:
        vectorizer = getattr(vc.vectorizer.vectorizer, "value", vc.vectorizer.vectorizer)
        if vectorizer != "none":
            problems.append(f"vector {VECTOR_NAME!r} uses vectorizer {vectorizer}, expected none (own vectors)")
        index_type = type(vc.vector_index_config).__name__
        if "HNSW" not in index_type:
            problems.append(f"vector {VECTOR_NAME!r} index is {index_type}, expected hnsw")
        distance = getattr(vc.vector_index_config, "distance_metric", None)
        if distance != VectorDistances.COSINE:
            got = getattr(distance, "value", distance)
            problems.append(f"vector {VECTOR_NAME!r} distance is {got}, expected cosine")
    if not config.inverted_index_config.index_null_state:
        problems.append("invertedIndexConfig.indexNullState is false, expected true (tenant filter)")
    if config.description and "vectors:" in config.description and config.description != description:
        stored = config.description.split("vectors:", 1)[1].strip()
        wanted = description.split("vectors:", 1)[1].strip()
        problems.append(f"stored vectors come from encoder {stored}, this router uses {wanted}")
    return problems


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 3)
