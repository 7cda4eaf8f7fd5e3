"""A fake Weaviate that the real `weaviate-client` v4 talks to, over its real wire protocols.

- REST (Starlette, served by uvicorn): `/v1/meta`, `/v1/.well-known/ready|live`, `/v1/schema`
  (list, create, per-class get/delete), `/v1/backups/{backend}` (list, create) and
  `/v1/backups/{backend}/{id}` (status). Shapes follow what the client parses
  (weaviate/collections/classes/config_methods.py, weaviate/backup/executor.py); a created class
  is echoed back with the defaults a real server fills in.
- gRPC (a `grpc` server on the protobuf stubs the client ships, `weaviate.proto.v1`):
  `weaviate.v1.Weaviate/Search` (near_vector with exact cosine distance in numpy, filters,
  sort, limit/offset/after with Weaviate's `QUERY_MAXIMUM_RESULTS` ceiling on offset + limit,
  requested properties and metadata), `BatchObjects`, `BatchDelete`,
  `Aggregate` (objects count), and `grpc.health.v1.Health/Check`.

Knobs for tests: `mode` ("ok" | "down" | "slow" | "error"), `slow_s`, and scripted backups
(`add_backup`, `next_backup_status`). Both servers bind 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import struct
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import numpy as np
import orjson
import uvicorn
from google.protobuf.struct_pb2 import Struct
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from weaviate.proto.v1 import (
    aggregate_pb2,
    base_pb2,
    batch_delete_pb2,
    batch_pb2,
    health_weaviate_pb2,
    properties_pb2,
    search_get_pb2,
    weaviate_pb2_grpc,
)

from tests.fakes.server import free_port

VERSION = "1.33.1"
Op = base_pb2.Filters
# Weaviate's default QUERY_MAXIMUM_RESULTS: a query's offset + limit may not pass it (the cursor,
# `after`, is exempt)
QUERY_MAXIMUM_RESULTS = 10_000


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _error(status: int, message: str) -> Response:
    return _json({"error": [{"message": message}]}, status)


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


# Defaults a real server adds to a class it creates (Weaviate 1.3x), so that the client's
# config parser finds every key it expects.
HNSW_DEFAULTS: dict[str, Any] = {
    "skip": False,
    "cleanupIntervalSeconds": 300,
    "maxConnections": 32,
    "efConstruction": 128,
    "ef": -1,
    "dynamicEfMin": 100,
    "dynamicEfMax": 500,
    "dynamicEfFactor": 8,
    "vectorCacheMaxObjects": 1000000000000,
    "flatSearchCutoff": 40000,
    "distance": "cosine",
    "pq": {"enabled": False},
    "bq": {"enabled": False},
    "sq": {"enabled": False},
    "filterStrategy": "sweeping",
}


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, val in over.items():
        if isinstance(val, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], val)
        elif val is not None:
            out[key] = val
    return out


def _server_defaults(cls: dict[str, Any]) -> dict[str, Any]:
    out = dict(cls)
    inverted = {
        "bm25": {"b": 0.75, "k1": 1.2},
        "cleanupIntervalSeconds": 60,
        "stopwords": {"preset": "en", "additions": None, "removals": None},
    }
    out["invertedIndexConfig"] = _deep_merge(inverted, cls.get("invertedIndexConfig") or {})
    out.setdefault("multiTenancyConfig", {"enabled": False, "autoTenantCreation": False})
    out.setdefault(
        "replicationConfig", {"factor": 1, "asyncEnabled": False, "deletionStrategy": "NoAutomatedResolution"}
    )
    out.setdefault(
        "shardingConfig",
        {
            "virtualPerPhysical": 128,
            "desiredCount": 1,
            "actualCount": 1,
            "desiredVirtualCount": 128,
            "actualVirtualCount": 128,
            "key": "_id",
            "strategy": "hash",
            "function": "murmur3",
        },
    )
    props = []
    for p in cls.get("properties") or []:
        prop = {k: v for k, v in p.items() if k not in ("skip_vectorization", "vectorize_property_name")}
        dtype = prop["dataType"][0]
        prop.setdefault("indexFilterable", True)
        prop.setdefault("indexSearchable", dtype in ("text", "text[]"))
        prop.setdefault("indexRangeFilters", False)
        if dtype in ("text", "text[]"):
            prop.setdefault("tokenization", "word")
        props.append(prop)
    out["properties"] = props
    vectors = {}
    for name, vc in (cls.get("vectorConfig") or {}).items():
        index_type = vc.get("vectorIndexType") or "hnsw"
        vic = _deep_merge(HNSW_DEFAULTS, vc.get("vectorIndexConfig") or {})
        vectors[name] = {
            "vectorizer": vc.get("vectorizer") or {"none": {}},
            "vectorIndexType": index_type,
            "vectorIndexConfig": vic,
        }
    if vectors:
        out["vectorConfig"] = vectors
    return out


@dataclass
class StoredObject:
    uuid: str
    properties: dict[str, Any]
    vector: np.ndarray | None
    created_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    updated_ms: int = field(default_factory=lambda: int(time.time() * 1000))


@dataclass
class Backup:
    id: str
    backend: str
    status: str
    classes: list[str]
    started_at: datetime
    completed_at: datetime | None = None
    error: str | None = None

    def listing(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "classes": self.classes,
            "status": self.status,
            "startedAt": _iso(self.started_at),
        }
        if self.completed_at is not None:
            out["completedAt"] = _iso(self.completed_at)
        return out

    def status_body(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "backend": self.backend,
            "path": f"https://fake.blob.core.windows.net/weaviate-backups/{self.id}",
            "status": self.status,
            "classes": self.classes,
        }
        if self.error:
            out["error"] = self.error
        return out


class FakeWeaviate:
    """The state and behaviour; `FakeWeaviateServer` serves it over REST and gRPC."""

    def __init__(self, *, api_key: str | None = None) -> None:
        self.api_key = api_key
        self.mode = "ok"  # ok | down | slow | error
        self.slow_s = 5.0
        self.classes: dict[str, dict[str, Any]] = {}
        self.objects: dict[str, dict[str, StoredObject]] = {}
        self.backups: dict[str, dict[str, Backup]] = {}
        # the status a backup created through the API starts in (STARTED, SUCCESS or FAILED)
        self.next_backup_status = "STARTED"
        self.calls: list[str] = []
        self.query_maximum_results = QUERY_MAXIMUM_RESULTS
        self.lock = threading.RLock()

    # -- test helpers ------------------------------------------------------------------------
    def reset(self) -> None:
        with self.lock:
            self.api_key = None
            self.mode = "ok"
            self.slow_s = 5.0
            self.classes.clear()
            self.objects.clear()
            self.backups.clear()
            self.next_backup_status = "STARTED"
            self.calls.clear()
            self.query_maximum_results = QUERY_MAXIMUM_RESULTS

    def add_backup(
        self,
        backup_id: str,
        status: str,
        *,
        age_hours: float,
        backend: str = "azure",
        error: str | None = None,
    ) -> Backup:
        started = datetime.now(UTC) - timedelta(hours=age_hours)
        done = status in ("SUCCESS", "FAILED", "CANCELED")
        b = Backup(
            id=backup_id,
            backend=backend,
            status=status,
            classes=sorted(self.classes),
            started_at=started - timedelta(minutes=5),
            completed_at=started if done else None,
            error=error,
        )
        with self.lock:
            self.backups.setdefault(backend, {})[backup_id] = b
        return b

    def count(self, collection: str) -> int:
        return len(self.objects.get(collection, {}))

    # -- failure knobs -------------------------------------------------------------------------
    async def _rest_gate(self) -> Response | None:
        if self.mode == "down":
            return _error(503, "weaviate is down (fake)")
        if self.mode == "error":
            return _error(500, "internal error (fake)")
        if self.mode == "slow":
            await asyncio.sleep(self.slow_s)
        return None

    def _grpc_gate(self, context: grpc.ServicerContext) -> None:
        if self.mode == "down":
            context.abort(grpc.StatusCode.UNAVAILABLE, "weaviate is down (fake)")
        if self.mode == "error":
            context.abort(grpc.StatusCode.INTERNAL, "internal error (fake)")
        if self.mode == "slow":
            time.sleep(self.slow_s)
        if self.api_key is not None:
            md = dict(context.invocation_metadata() or ())
            if md.get("authorization") != f"Bearer {self.api_key}":
                context.abort(grpc.StatusCode.UNAUTHENTICATED, "bad api key")

    def _authorised(self, request: Request) -> bool:
        return self.api_key is None or request.headers.get("authorization") == f"Bearer {self.api_key}"

    # -- REST ------------------------------------------------------------------------------------
    def rest_app(self) -> Starlette:
        async def gate(request: Request) -> Response | None:
            self.calls.append(f"{request.method} {request.url.path}")
            blocked = await self._rest_gate()
            if blocked is not None:
                return blocked
            if not self._authorised(request):
                return _error(401, "anonymous access not enabled")
            return None

        async def meta(request: Request) -> Response:
            return await gate(request) or _json(
                {"hostname": "http://[::]:8080", "version": VERSION, "modules": {"backup-azure": {}}}
            )

        async def ready(request: Request) -> Response:
            blocked = await gate(request)
            return blocked or Response(status_code=200)

        async def schema(request: Request) -> Response:
            blocked = await gate(request)
            if blocked:
                return blocked
            if request.method == "GET":
                with self.lock:
                    return _json({"classes": list(self.classes.values())})
            body = orjson.loads(await request.body())
            name = body["class"]
            name = name[0].upper() + name[1:]
            with self.lock:
                if name in self.classes:
                    return _error(422, f"class name {name!r} already exists")
                body["class"] = name
                self.classes[name] = _server_defaults(body)
                self.objects[name] = {}
                return _json(self.classes[name])

        async def schema_class(request: Request) -> Response:
            blocked = await gate(request)
            if blocked:
                return blocked
            name = request.path_params["name"]
            with self.lock:
                if request.method == "DELETE":
                    self.classes.pop(name, None)
                    self.objects.pop(name, None)
                    return Response(status_code=200)
                if name not in self.classes:
                    return Response(status_code=404)
                return _json(self.classes[name])

        async def backups(request: Request) -> Response:
            blocked = await gate(request)
            if blocked:
                return blocked
            backend = request.path_params["backend"]
            with self.lock:
                store = self.backups.setdefault(backend, {})
                if request.method == "GET":
                    rows = sorted(store.values(), key=lambda b: b.started_at, reverse=True)
                    if request.query_params.get("order") == "asc":
                        rows.reverse()
                    return _json([b.listing() for b in rows])
                body = orjson.loads(await request.body())
                backup_id = str(body["id"]).lower()
                if backup_id in store:
                    return _error(422, f"backup {backup_id!r} already exists")
                if any(b.status not in ("SUCCESS", "FAILED", "CANCELED") for b in store.values()):
                    return _error(422, "a backup is already in progress")
                now = datetime.now(UTC)
                status = self.next_backup_status
                b = Backup(
                    id=backup_id,
                    backend=backend,
                    status=status,
                    classes=list(body.get("include") or sorted(self.classes)),
                    started_at=now,
                    completed_at=now if status in ("SUCCESS", "FAILED") else None,
                    error="fake failure" if status == "FAILED" else None,
                )
                store[backup_id] = b
                return _json(b.status_body())

        async def backup_status(request: Request) -> Response:
            blocked = await gate(request)
            if blocked:
                return blocked
            backend, backup_id = request.path_params["backend"], request.path_params["id"]
            with self.lock:
                b = self.backups.get(backend, {}).get(backup_id)
                if b is None:
                    return _error(404, f"backup {backup_id!r} not found")
                return _json(b.status_body())

        routes = [
            Route("/v1/meta", meta, methods=["GET"]),
            Route("/v1/.well-known/ready", ready, methods=["GET"]),
            Route("/v1/.well-known/live", ready, methods=["GET"]),
            Route("/v1/schema", schema, methods=["GET", "POST"]),
            Route("/v1/schema/{name}", schema_class, methods=["GET", "DELETE"]),
            Route("/v1/backups/{backend}", backups, methods=["GET", "POST"]),
            Route("/v1/backups/{backend}/{id}", backup_status, methods=["GET"]),
        ]
        return Starlette(routes=routes)

    # -- gRPC ------------------------------------------------------------------------------------
    def _schema_types(self, collection: str) -> dict[str, str]:
        cls = self.classes.get(collection) or {}
        return {p["name"]: p["dataType"][0] for p in cls.get("properties", [])}

    def batch_objects(self, request: batch_pb2.BatchObjectsRequest) -> batch_pb2.BatchObjectsReply:
        errors = []
        with self.lock:
            for n, obj in enumerate(request.objects):
                if obj.collection not in self.classes:
                    errors.append(
                        batch_pb2.BatchObjectsReply.BatchError(index=n, error=f"class {obj.collection} not found")
                    )
                    continue
                types = self._schema_types(obj.collection)
                try:
                    props = _properties_from_batch(obj.properties, types)
                except ValueError as exc:
                    errors.append(batch_pb2.BatchObjectsReply.BatchError(index=n, error=str(exc)))
                    continue
                vector = None
                if obj.vector_bytes:
                    vector = np.frombuffer(obj.vector_bytes, dtype=np.float32).copy()
                elif len(obj.vectors):
                    vector = np.frombuffer(obj.vectors[0].vector_bytes, dtype=np.float32).copy()
                key = str(uuid.UUID(obj.uuid))
                old = self.objects[obj.collection].get(key)
                stored = StoredObject(key, props, vector)
                if old is not None:
                    stored.created_ms = old.created_ms
                self.objects[obj.collection][key] = stored
        return batch_pb2.BatchObjectsReply(took=0.0, errors=errors)

    def _matching(self, collection: str, filters: base_pb2.Filters | None) -> list[StoredObject]:
        objs = list(self.objects.get(collection, {}).values())
        if filters is None:
            return objs
        types = self._schema_types(collection)
        return [o for o in objs if _matches(o, filters, types)]

    def search(self, request: search_get_pb2.SearchRequest) -> search_get_pb2.SearchReply:
        with self.lock:
            if request.collection not in self.classes:
                raise KeyError(f"class {request.collection} not found")
            start = request.offset or 0
            limit = request.limit or 10
            if not request.after and start + limit > self.query_maximum_results:
                # Weaviate's own words (explorer: invalid pagination params)
                raise ValueError(
                    "explorer: list class: search: invalid pagination params: query maximum results exceeded"
                )
            objs = self._matching(request.collection, request.filters if request.HasField("filters") else None)
            distances: list[float | None] = [None] * len(objs)
            if request.HasField("near_vector"):
                query = _near_vector(request.near_vector)
                with_vec = [o for o in objs if o.vector is not None]
                if with_vec:
                    matrix = np.vstack([o.vector for o in with_vec]).astype(np.float32)
                    norms = np.linalg.norm(matrix, axis=1)
                    norms[norms == 0] = 1.0
                    q = query / (np.linalg.norm(query) or 1.0)
                    dist = 1.0 - (matrix @ q) / norms
                    order = np.argsort(dist, kind="stable")
                    objs = [with_vec[i] for i in order]
                    distances = [float(dist[i]) for i in order]
                else:
                    objs = []
                    distances = []
                if request.near_vector.HasField("distance"):
                    keep = [n for n, d in enumerate(distances) if d is not None and d <= request.near_vector.distance]
                    objs = [objs[n] for n in keep]
                    distances = [distances[n] for n in keep]
            else:
                # Weaviate's objects bucket is keyed by uuid: listings and the cursor (`after`)
                # walk objects in uuid order
                objs.sort(key=lambda o: o.uuid)
                if request.after:
                    objs = [o for o in objs if o.uuid > request.after]
                types = self._schema_types(request.collection)
                for by in reversed(request.sort_by):  # stable sorts, the last key first
                    objs.sort(key=lambda o, p=by.path[0]: _sort_key(o, p, types), reverse=not by.ascending)
                distances = [None] * len(objs)
            picked = list(zip(objs, distances, strict=True))[start : start + limit]
            types = self._schema_types(request.collection)
            results = []
            for obj, dist in picked:
                meta = search_get_pb2.MetadataResult(id=obj.uuid, id_as_bytes=uuid.UUID(obj.uuid).bytes)
                if request.metadata.distance and dist is not None:
                    meta.distance = dist
                    meta.distance_present = True
                if request.metadata.creation_time_unix:
                    meta.creation_time_unix = obj.created_ms
                    meta.creation_time_unix_present = True
                if request.metadata.last_update_time_unix:
                    meta.last_update_time_unix = obj.updated_ms
                    meta.last_update_time_unix_present = True
                if request.metadata.vector and obj.vector is not None:
                    meta.vector_bytes = obj.vector.astype(np.float32).tobytes()
                # named vectors (include_vector=[name]): each object here holds one vector
                for name in request.metadata.vectors if obj.vector is not None else ():
                    meta.vectors.append(
                        base_pb2.Vectors(
                            name=name,
                            vector_bytes=obj.vector.astype(np.float32).tobytes(),
                            type=base_pb2.Vectors.VECTOR_TYPE_SINGLE_FP32,
                        )
                    )
                if not request.HasField("properties") or request.properties.return_all_nonref_properties:
                    names = list(types)
                else:
                    names = list(request.properties.non_ref_properties)
                props = properties_pb2.Properties()
                for name in names:
                    props.fields[name].CopyFrom(_value(obj.properties.get(name), types.get(name, "text")))
                results.append(
                    search_get_pb2.SearchResult(
                        metadata=meta,
                        properties=search_get_pb2.PropertiesResult(
                            target_collection=request.collection, non_ref_props=props
                        ),
                    )
                )
            return search_get_pb2.SearchReply(took=0.0, results=results)

    def batch_delete(self, request: batch_delete_pb2.BatchDeleteRequest) -> batch_delete_pb2.BatchDeleteReply:
        with self.lock:
            if request.collection not in self.classes:
                raise KeyError(f"class {request.collection} not found")
            hits = self._matching(request.collection, request.filters)
            if not request.dry_run:
                for o in hits:
                    del self.objects[request.collection][o.uuid]
            objects = (
                [batch_delete_pb2.BatchDeleteObject(uuid=uuid.UUID(o.uuid).bytes, successful=True) for o in hits]
                if request.verbose
                else []
            )
            return batch_delete_pb2.BatchDeleteReply(
                took=0.0, failed=0, matches=len(hits), successful=len(hits), objects=objects
            )

    def aggregate(self, request: aggregate_pb2.AggregateRequest) -> aggregate_pb2.AggregateReply:
        with self.lock:
            if request.collection not in self.classes:
                raise KeyError(f"class {request.collection} not found")
            hits = self._matching(request.collection, request.filters if request.HasField("filters") else None)
            return aggregate_pb2.AggregateReply(
                took=0.0, single_result=aggregate_pb2.AggregateReply.Single(objects_count=len(hits))
            )


class _Servicer(weaviate_pb2_grpc.WeaviateServicer):
    def __init__(self, fake: FakeWeaviate) -> None:
        self.fake = fake

    def _run(self, name: str, fn: Any, request: Any, context: grpc.ServicerContext) -> Any:
        self.fake.calls.append(f"grpc {name}")
        self.fake._grpc_gate(context)
        try:
            return fn(request)
        except KeyError as exc:
            context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        except ValueError as exc:
            context.abort(grpc.StatusCode.UNKNOWN, str(exc))

    def Search(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._run("Search", self.fake.search, request, context)

    def BatchObjects(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._run("BatchObjects", self.fake.batch_objects, request, context)

    def BatchDelete(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._run("BatchDelete", self.fake.batch_delete, request, context)

    def Aggregate(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._run("Aggregate", self.fake.aggregate, request, context)


def _health_handler(fake: FakeWeaviate) -> grpc.GenericRpcHandler:
    def check(request: Any, context: grpc.ServicerContext) -> Any:
        fake._grpc_gate(context)
        return health_weaviate_pb2.WeaviateHealthCheckResponse(
            status=health_weaviate_pb2.WeaviateHealthCheckResponse.SERVING
        )

    handler = grpc.unary_unary_rpc_method_handler(
        check,
        request_deserializer=health_weaviate_pb2.WeaviateHealthCheckRequest.FromString,
        response_serializer=health_weaviate_pb2.WeaviateHealthCheckResponse.SerializeToString,
    )
    return grpc.method_handlers_generic_handler("grpc.health.v1.Health", {"Check": handler})


# --- protocol details ----------------------------------------------------------------------------


def _near_vector(nv: Any) -> np.ndarray:
    if nv.vector_bytes:
        return np.frombuffer(nv.vector_bytes, dtype=np.float32)
    if len(nv.vectors):
        return np.frombuffer(nv.vectors[0].vector_bytes, dtype=np.float32)
    return np.asarray(list(nv.vector), dtype=np.float32)


def _properties_from_batch(props: batch_pb2.BatchObject.Properties, types: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    plain = _struct_to_dict(props.non_ref_properties)
    for key, val in plain.items():
        dtype = types.get(key)
        if dtype is None:
            raise ValueError(f"no such prop with name '{key}' found in class in the schema")
        if val is None:
            out[key] = None
        elif dtype == "int":
            if float(val) != int(val):
                raise ValueError(f"invalid integer property '{key}' on class")
            out[key] = int(val)
        elif dtype == "number":
            out[key] = float(val)
        else:
            out[key] = val
    for arr in props.text_array_properties:
        out[arr.prop_name] = list(arr.values)
    for arr in props.number_array_properties:
        if arr.values_bytes:
            n = len(arr.values_bytes) // 8
            out[arr.prop_name] = list(struct.unpack(f"<{n}d", arr.values_bytes))
        else:
            out[arr.prop_name] = list(arr.values)
    for arr in props.int_array_properties:
        out[arr.prop_name] = list(arr.values)
    for arr in props.boolean_array_properties:
        out[arr.prop_name] = list(arr.values)
    for name in props.empty_list_props:
        out[name] = []
    unknown = [k for k in out if k not in types]
    if unknown:
        raise ValueError(f"no such prop with name '{unknown[0]}' found in class in the schema")
    return out


def _struct_to_dict(s: Struct) -> dict[str, Any]:
    from google.protobuf.json_format import MessageToDict

    return MessageToDict(s)  # type: ignore[no-any-return]


def _value(val: Any, dtype: str) -> properties_pb2.Value:
    if val is None:
        return properties_pb2.Value(null_value=0)
    if dtype == "text":
        return properties_pb2.Value(text_value=str(val))
    if dtype == "int":
        return properties_pb2.Value(int_value=int(val))
    if dtype == "number":
        return properties_pb2.Value(number_value=float(val))
    if dtype == "boolean":
        return properties_pb2.Value(bool_value=bool(val))
    if dtype == "date":
        return properties_pb2.Value(date_value=str(val))
    if dtype == "text[]":
        return properties_pb2.Value(
            list_value=properties_pb2.ListValue(text_values=properties_pb2.TextValues(values=list(val)))
        )
    if dtype == "number[]":
        packed = struct.pack(f"<{len(val)}d", *val)
        return properties_pb2.Value(
            list_value=properties_pb2.ListValue(number_values=properties_pb2.NumberValues(values=packed))
        )
    if dtype == "int[]":
        packed = struct.pack(f"<{len(val)}q", *val)
        return properties_pb2.Value(
            list_value=properties_pb2.ListValue(int_values=properties_pb2.IntValues(values=packed))
        )
    raise ValueError(f"fake does not serve {dtype}")


def _date(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _sort_key(obj: StoredObject, prop: str, types: dict[str, str]) -> tuple[bool, Any]:
    """Weaviate sorts a missing value below every value."""
    value = obj.properties.get(prop)
    if value is None:
        return (False, 0)  # missing values compare equal among themselves
    return (True, _date(value) if types.get(prop) == "date" else value)


def _matches(obj: StoredObject, f: base_pb2.Filters, types: dict[str, str]) -> bool:
    op = f.operator
    if op == Op.OPERATOR_AND:
        return all(_matches(obj, sub, types) for sub in f.filters)
    if op == Op.OPERATOR_OR:
        return any(_matches(obj, sub, types) for sub in f.filters)
    if op == Op.OPERATOR_NOT:
        return not any(_matches(obj, sub, types) for sub in f.filters)
    prop = f.target.property if f.HasField("target") else (f.on[0] if f.on else "")
    actual = obj.uuid if prop == "_id" else obj.properties.get(prop)
    if op == Op.OPERATOR_IS_NULL:
        is_null = actual is None or actual == []
        return is_null == f.value_boolean
    which = f.WhichOneof("test_value")
    expected: Any
    if which == "value_text_array":
        expected = list(f.value_text_array.values)
    elif which == "value_int_array":
        expected = list(f.value_int_array.values)
    elif which == "value_number_array":
        expected = list(f.value_number_array.values)
    else:
        expected = getattr(f, which) if which else None
    if types.get(prop) == "date":  # compared as instants, not as strings
        actual, expected = _date(actual), _date(expected)
    if op == Op.OPERATOR_EQUAL:
        return bool(actual == expected)
    if op == Op.OPERATOR_NOT_EQUAL:
        return bool(actual != expected)
    if op == Op.OPERATOR_CONTAINS_ANY:
        have = actual if isinstance(actual, list) else [actual]
        return any(v in have for v in expected)
    if op in (
        Op.OPERATOR_GREATER_THAN,
        Op.OPERATOR_GREATER_THAN_EQUAL,
        Op.OPERATOR_LESS_THAN,
        Op.OPERATOR_LESS_THAN_EQUAL,
    ):
        if actual is None:
            return False
        if op == Op.OPERATOR_GREATER_THAN:
            return bool(actual > expected)
        if op == Op.OPERATOR_GREATER_THAN_EQUAL:
            return bool(actual >= expected)
        if op == Op.OPERATOR_LESS_THAN:
            return bool(actual < expected)
        return bool(actual <= expected)
    raise ValueError(f"fake does not support filter operator {op}")


class FakeWeaviateServer:
    """Serves a FakeWeaviate on 127.0.0.1 (REST + gRPC) from one background thread and loop."""

    def __init__(self, fake: FakeWeaviate | None = None) -> None:
        self.fake = fake or FakeWeaviate()
        self.http_port = free_port()
        self.grpc_port = 0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._grpc: grpc.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        config = uvicorn.Config(
            self.fake.rest_app(), host="127.0.0.1", port=self.http_port, log_level="warning", lifespan="off"
        )
        rest = uvicorn.Server(config)
        rest_task = asyncio.create_task(rest.serve())
        while not rest.started:
            if rest_task.done():
                await rest_task
                return
            await asyncio.sleep(0.01)
        self._started.set()
        await self._stop.wait()
        rest.should_exit = True
        await rest_task

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self._error = exc
            self._started.set()

    def start(self) -> FakeWeaviateServer:
        # a thread-pool gRPC server: a grpc.aio server in the same process as the client's
        # grpc.aio channel makes the two fight over aio's completion-queue poller
        self._grpc = grpc.server(ThreadPoolExecutor(max_workers=8, thread_name_prefix="fake-weaviate-grpc"))
        weaviate_pb2_grpc.add_WeaviateServicer_to_server(_Servicer(self.fake), self._grpc)
        self._grpc.add_generic_rpc_handlers((_health_handler(self.fake),))
        self.grpc_port = self._grpc.add_insecure_port("127.0.0.1:0")
        self._grpc.start()
        self._thread = threading.Thread(target=self._run, daemon=True, name="fake-weaviate")
        self._thread.start()
        if not self._started.wait(20) or self._error is not None:
            raise RuntimeError(f"fake Weaviate did not start: {self._error!r}")
        return self

    def stop(self) -> None:
        if self._grpc is not None:
            self._grpc.stop(grace=0)
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout=15)

    def __enter__(self) -> FakeWeaviateServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
