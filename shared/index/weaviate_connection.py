"""Where Weaviate is and how to reach it: REST (schema, readiness, backups) and gRPC (search and
batch), which may be on different hosts and ports behind an ingress; and gRPC's own health check."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlparse

import grpc
import weaviate
from weaviate.classes.init import AdditionalConfig, Auth, Timeout
from weaviate.client import WeaviateAsyncClient
from weaviate.proto.v1 import health_weaviate_pb2

from ..config import Settings, secret_value


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
