"""Weaviate: REST and gRPC both reachable, and the collection's schema what this router needs."""

from __future__ import annotations

import asyncio

import grpc
import httpx

from ..composition.assemble import build_encoder
from ..config import Settings, secret_value
from ..index.weaviate import WeaviateIndex
from ..index.weaviate_connection import ConnectionTarget
from ..index.weaviate_schema import schema_differences
from .base import CheckResult, Environment, describe, failed, passed, skipped

NAME = "weaviate"


def _encoder_name(s: Settings) -> str:

    return str(build_encoder(s).name)


async def grpc_reachable(host: str, port: int, secure: bool, timeout_s: float) -> None:

    target = f"{host}:{port}"
    channel = (
        grpc.aio.secure_channel(target, grpc.ssl_channel_credentials()) if secure else grpc.aio.insecure_channel(target)
    )
    try:
        await asyncio.wait_for(channel.channel_ready(), timeout_s)
    finally:
        await channel.close()


class WeaviateCheck:
    name = NAME
    timeout_fix = "check WEAVIATE_URL and WEAVIATE_GRPC_HOST/PORT are reachable from here"

    async def run(self, env: Environment) -> CheckResult:

        s = env.settings
        if not s.weaviate_url:
            return skipped(NAME, "WEAVIATE_URL unset: the in-process index serves the examples")
        t = ConnectionTarget.from_settings(s)
        rest = f"{'https' if t.http_secure else 'http'}://{t.http_host}:{t.http_port}"
        key = secret_value(s.weaviate_api_key)
        headers = {"authorization": f"Bearer {key}"} if key else {}
        try:
            async with httpx.AsyncClient(timeout=env.timeout_s / 3) as http:
                r = await http.get(rest + "/v1/meta", headers=headers)
        except httpx.HTTPError as exc:
            return failed(
                NAME,
                f"REST unreachable at {rest}: {describe(exc)}",
                "check WEAVIATE_URL (scheme, host, port) and the network path",
            )
        if r.status_code in (401, 403):
            return failed(
                NAME,
                f"REST at {rest} refused the API key ({r.status_code})",
                "put a valid key in WEAVIATE_API_KEY (Key Vault secret WEAVIATE-API-KEY)",
            )
        if r.status_code != 200:
            return failed(
                NAME,
                f"REST at {rest} answered {r.status_code}",
                "check that Weaviate is healthy (GET /v1/.well-known/ready)",
            )
        version = r.json().get("version", "?")
        try:
            await grpc_reachable(t.grpc_host, t.grpc_port, t.grpc_secure, env.timeout_s / 3)
        except Exception as exc:
            return failed(
                NAME,
                f"REST ok ({version}) but gRPC unreachable at {t.grpc_host}:{t.grpc_port}{' (TLS)' if t.grpc_secure else ''}: {describe(exc) if str(exc) else 'no connection'}",
                "expose Weaviate's gRPC port (50051) to the app and set WEAVIATE_GRPC_HOST/WEAVIATE_GRPC_PORT (and WEAVIATE_GRPC_SECURE); the client queries over gRPC",
            )
        index = WeaviateIndex.from_settings(s, dim=1, encoder_name=_encoder_name(s))
        try:
            await index.client.connect()
            if not await index.client.collections.exists(s.weaviate_collection):
                return passed(
                    NAME,
                    f"REST and gRPC ok ({version}); collection {s.weaviate_collection} absent: the app creates it at start",
                )
            config = await index.client.collections.use(s.weaviate_collection).config.get()
        finally:
            await index.close()
        problems = schema_differences(config, index.description)
        if problems:
            return failed(
                NAME,
                f"collection {s.weaviate_collection} differs: " + "; ".join(problems),
                "migrate the collection (docs/weaviate.md) or point WEAVIATE_COLLECTION at a new one",
            )
        return passed(NAME, f"REST and gRPC ok ({version}); collection {s.weaviate_collection} matches")
