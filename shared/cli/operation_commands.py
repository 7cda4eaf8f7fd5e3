"""route, models, token, migrate, examples, backup-check, preflight: running and operating the router."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from ..auth.base import ANONYMOUS, Role
from ..auth.service_tokens import ServiceTokens, service_secret
from ..backups import run_backup_check
from ..catalog import Catalog
from ..composition.assemble import assemble, build_encoder
from ..composition.backends import build_services
from ..config import Settings, secret_value
from ..examples.transfer import export_csv, import_csv
from ..index.weaviate import WeaviateIndex
from ..preflight import main as preflight
from ..schemas import ChatCompletionRequest
from ..store.db import Database
from .output import print_json


def cmd_route(args: argparse.Namespace, settings: Settings) -> int:

    async def run() -> dict[str, Any]:
        services = await assemble(settings)
        try:
            req = ChatCompletionRequest.model_validate(
                {"model": args.model, "messages": [{"role": "user", "content": args.prompt}]}
            )
            decision = await services.chat.decide(req, ANONYMOUS)
            return decision.public()
        finally:
            await services.close()

    print_json(asyncio.run(run()))
    return 0


def cmd_models(args: argparse.Namespace, settings: Settings) -> int:

    catalog = Catalog.load(settings.model_catalog_path)
    print_json({"data": [m.public() for m in catalog], "retired": catalog.retired})
    return 0


_TTL_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def parse_ttl(text: str) -> int:
    """`90`, `90s`, `30m`, `1h`, `7d` -> seconds."""
    text = text.strip().lower()
    unit = text[-1] if text and text[-1] in _TTL_UNITS else "s"
    number = text[:-1] if text and text[-1] in _TTL_UNITS else text
    try:
        seconds = int(float(number) * _TTL_UNITS[unit])
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (use 90s, 30m, 1h, 7d)") from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError("the TTL must be positive")
    return seconds


def cmd_token(args: argparse.Namespace, settings: Settings) -> int:

    secret = service_secret(settings)
    if not secret:
        raise SystemExit("JWT_SECRET is not set")
    names = {"invoke": Role.INVOKE, "admin": Role.ADMIN, "ops": Role.OPS, "platform-admin": Role.PLATFORM_ADMIN}
    roles = sorted({names[r].value for r in args.role})
    tokens = ServiceTokens.from_settings(settings, secret)
    print(tokens.mint(args.tenant, roles, ttl_s=args.ttl, subject=args.subject))
    return 0


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:

    async def run() -> dict[str, Any]:
        url = secret_value(settings.database_url)
        target = "DATABASE_URL"
        if url is None:
            # the embedded server is a development tool (requirements-local.txt), not the container's
            from devtools.embedded import start_embedded_postgres

            url = await asyncio.to_thread(start_embedded_postgres, settings.embedded_data_dir)
            target = f"embedded ({settings.embedded_data_dir})"
        db = Database(url, max_size=1, acquire_timeout_s=args.timeout)
        await db.open()
        try:
            applied = await db.migrate()
        finally:
            await db.close()
        return {"database": target, "applied": applied}

    print_json(asyncio.run(run()))
    return 0


def _weaviate_index(settings: Settings) -> Any:

    if not settings.weaviate_url:
        raise SystemExit(
            "WEAVIATE_URL is not set: the local index lives in memory and loads EXAMPLES_PATH at start; "
            "set WEAVIATE_URL to import into Weaviate"
        )
    encoder = build_encoder(settings)
    return encoder, WeaviateIndex.from_settings(settings, dim=encoder.dim, encoder_name=encoder.name)


def _rename_pairs(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        col, sep, key = pair.partition("=")
        if not sep or not col or not key:
            raise SystemExit(f"--rename wants COLUMN=KEY, got {pair!r}")
        out[col] = key
    return out


def cmd_examples(args: argparse.Namespace, settings: Settings) -> int:

    encoder, index = _weaviate_index(settings)

    async def run() -> dict[str, Any]:
        try:
            await index.ensure_schema()
            if args.action == "import":
                n = await import_csv(
                    index,
                    encoder,
                    Path(args.file),
                    model_columns=args.model_column or None,
                    rename=_rename_pairs(args.rename),
                    progress=not args.no_progress,
                    prompt_column=args.prompt_column,
                    category=args.category,
                )
                return {"imported": n, "file": args.file, "total": await index.count()}
            n = await export_csv(index, Path(args.file))
            return {"exported": n, "file": args.file}
        finally:
            await index.close()

    if args.action == "import" and not Path(args.file).exists():
        raise SystemExit(f"not found: {args.file}")
    print_json(asyncio.run(run()))
    return 0


def cmd_backup_check(args: argparse.Namespace, settings: Settings) -> int:

    async def run() -> dict[str, Any] | None:
        services = await build_services(settings)
        try:
            check = await run_backup_check(services.backups)
            return check.public() if check is not None else None
        finally:
            await services.close()

    result = asyncio.run(run())
    if result is None:
        raise SystemExit("WEAVIATE_URL is not set: there are no Weaviate backups to check")
    print_json(result)
    return 0 if result["ok"] else 1


def cmd_preflight(args: argparse.Namespace, settings: Settings) -> int:

    return preflight(settings, as_json=args.json, timeout_s=args.timeout)
