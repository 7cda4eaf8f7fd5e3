"""A fake Azure Key Vault (secrets REST API, over HTTPS on 127.0.0.1) for the real SDK.

It speaks what `azure.keyvault.secrets.aio.SecretClient` needs: an unauthenticated first request
gets the 401 bearer challenge (WWW-Authenticate with `authorization` and `resource`), then
`GET /secrets/{name}/{version}?api-version=...` answers the secret bundle, or 404
`SecretNotFound`. The SDK refuses bearer tokens over plain HTTP, hence TLS with a
self-signed certificate made here.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.server import ServerThread

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
ACCESS_TOKEN = "fake-kv-access-token"


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "kv-cert.pem", directory / "kv-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


class FakeKeyVault:
    def __init__(self, secrets: dict[str, str] | None = None) -> None:
        self.secrets: dict[str, str] = dict(secrets or {})
        self.requests: list[dict[str, Any]] = []
        self.url = ""
        self.app = Starlette(routes=[Route("/secrets/{rest:path}", self.get_secret, methods=["GET"])])

    async def get_secret(self, request: Request) -> Response:
        auth = request.headers.get("authorization")
        self.requests.append({"path": request.url.path, "authorization": auth, "query": dict(request.query_params)})
        if auth != f"Bearer {ACCESS_TOKEN}":
            challenge = (
                f'Bearer authorization="https://login.microsoftonline.com/{TENANT}", resource="https://vault.azure.net"'
            )
            return JSONResponse(
                {"error": {"code": "Unauthorized", "message": "AKV10000: Request is missing a Bearer or PoP token."}},
                status_code=401,
                headers={"WWW-Authenticate": challenge},
            )
        name = request.path_params["rest"].split("/")[0]
        if name not in self.secrets:
            return JSONResponse(
                {
                    "error": {
                        "code": "SecretNotFound",
                        "message": f"A secret with (name/id) {name} was not found in this key vault.",
                    }
                },
                status_code=404,
            )
        version = uuid.uuid4().hex
        now = int(time.time())
        return JSONResponse(
            {
                "value": self.secrets[name],
                "id": f"{self.url}/secrets/{name}/{version}",
                "attributes": {
                    "enabled": True,
                    "created": now,
                    "updated": now,
                    "recoveryLevel": "Recoverable+Purgeable",
                },
            }
        )


class TlsServerThread(ServerThread):
    def __init__(self, app: Any, certfile: Path, keyfile: Path) -> None:
        super().__init__(app)
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
            loop="asyncio",
            ssl_certfile=str(certfile),
            ssl_keyfile=str(keyfile),
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"


class StaticTokenCredential:
    """An async credential that hands out one fixed token (what DefaultAzureCredential would get
    from the managed identity in Azure)."""

    def __init__(self, token: str = ACCESS_TOKEN) -> None:
        self.token = token
        self.scopes: list[tuple[str, ...]] = []

    async def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        self.scopes.append(scopes)
        return AccessToken(self.token, int(time.time()) + 3600)

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> StaticTokenCredential:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None
