"""python -m shared.cli: route, models, evaluate, calibrate, and the operator commands."""

from __future__ import annotations

import argparse
import asyncio
import glob
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .config import Settings, get_settings


def _print(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str))


def _expand(patterns: list[str]) -> list[Path]:
    paths: list[Path] = []
    for pat in patterns:
        hits = sorted(glob.glob(pat))
        paths.extend(Path(h) for h in (hits or [pat]))
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise SystemExit(f"not found: {', '.join(missing)}")
    return paths


# --- commands -------------------------------------------------------------------------------


def cmd_route(args: argparse.Namespace, settings: Settings) -> int:
    from .auth.base import ANONYMOUS
    from .context import AppContext
    from .schemas import ChatCompletionRequest

    async def run() -> dict[str, Any]:
        ctx = await AppContext.create(settings)
        try:
            req = ChatCompletionRequest.model_validate(
                {"model": args.model, "messages": [{"role": "user", "content": args.prompt}]}
            )
            decision = await ctx.service.decide(req, ANONYMOUS)
            return decision.public()
        finally:
            await ctx.close()

    _print(asyncio.run(run()))
    return 0


def cmd_models(args: argparse.Namespace, settings: Settings) -> int:
    from .catalog import Catalog

    catalog = Catalog.load(settings.model_catalog_path)
    _print({"data": [m.public() for m in catalog], "retired": catalog.retired})
    return 0


def _predictor_params(settings: Settings, k: int | None) -> Any:
    from .routing.predictor import PredictorParams

    return PredictorParams(
        k=k or settings.routing_k,
        prior_strength=settings.routing_prior_strength,
        similarity_power=settings.routing_similarity_power,
    )


def encoder_factory(settings: Settings) -> Callable[[Sequence[str]], Any]:
    """How evaluate/calibrate build the encoder from the training texts."""
    if settings.encoder == "tfidf-svd":
        from .encoders.tfidf_svd import TfidfSvdEncoder

        return TfidfSvdEncoder.fit
    if settings.encoder == "hashing":
        from .encoders.hashing import HashingEncoder

        return lambda texts: HashingEncoder(dim=settings.encoder_dim)
    raise SystemExit("evaluate needs an in-process encoder (ENCODER=tfidf-svd or hashing)")


def cmd_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from .evaluation import evaluate, load_dataset

    if args.test:
        return _evaluate_cross(args, settings)
    if not args.data:
        raise SystemExit("evaluate needs --data FILE... (in-domain split) or --train ... --test FILE...")
    data = load_dataset(_expand(args.data), args.strong, args.weak)
    result = evaluate(
        data,
        encoder_factory(settings),
        _predictor_params(settings, args.k),
        train_frac=args.train_frac,
        seed=args.seed,
        plot=Path(args.plot) if args.plot else None,
    )
    if args.json:
        print(json.dumps(result))
    else:
        _print(result)
    return 0


def _evaluate_cross(args: argparse.Namespace, settings: Settings) -> int:
    """--train starter|FILE... --test FILE... [--learn N ...]: one JSON line per test file (and N)."""
    from .catalog import Catalog
    from .evaluation_cross import evaluate_file, load_train, tier_models

    if not args.train:
        raise SystemExit("--test needs --train starter|FILE...")
    starter = args.train == ["starter"]
    make_encoder = encoder_factory(settings)
    if starter:
        train = load_train(
            None, args.strong, args.weak, make_encoder, (settings.examples_path, _shipped_encoder(settings))
        )
    else:
        train = load_train(_expand(args.train), args.strong, args.weak, make_encoder, None)
    models = tier_models(Catalog.load(settings.model_catalog_path))
    params = _predictor_params(settings, args.k)
    for test in _expand(args.test):
        for line in evaluate_file(train, test, args, params, models, make_encoder):
            print(json.dumps(line) if args.json else json.dumps(line, indent=2), flush=True)
    return 0


def _shipped_encoder(settings: Settings) -> Any:
    from .context import build_encoder

    encoder = build_encoder(settings)
    if not hasattr(encoder, "encode"):
        raise SystemExit("evaluate needs an in-process encoder (ENCODER=tfidf-svd or hashing)")
    return encoder


def cmd_calibrate(args: argparse.Namespace, settings: Settings) -> int:
    from .evaluation import GainScorer, load_dataset, split, threshold_for

    data = load_dataset(_expand(args.data), args.strong, args.weak)
    train, held = split(len(data.texts), args.train_frac, args.seed)
    encoder = encoder_factory(settings)([data.texts[i] for i in train])
    scorer = GainScorer(encoder, _predictor_params(settings, None))
    scorer.fit([data.texts[i] for i in train], data.strong[train], data.weak[train])
    scores, _ = scorer.score_all([data.texts[i] for i in held])
    out: dict[str, Any] = dict(
        threshold_for(
            scores,
            data.strong[held],
            data.weak[held],
            strong_share=args.target_strong_share,
            quality=args.target_quality,
        )
    )
    out["setting"] = f"COST_QUALITY_MARGIN={out['threshold']}"
    out["n_held_out"] = len(held)
    _print(out)
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
    from .auth.base import Role
    from .auth.service_tokens import ServiceTokens, service_secret

    secret = service_secret(settings)
    if not secret:
        raise SystemExit("JWT_SECRET is not set")
    names = {"invoke": Role.INVOKE, "admin": Role.ADMIN, "ops": Role.OPS}
    roles = sorted({names[r].value for r in args.role})
    tokens = ServiceTokens.from_settings(settings, secret)
    print(tokens.mint(args.tenant, roles, ttl_s=args.ttl, subject=args.subject))
    return 0


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from .config import secret_value
    from .store.db import Database

    async def run() -> dict[str, Any]:
        url = secret_value(settings.database_url)
        target = "DATABASE_URL"
        if url is None:
            from .embedded import start_embedded_postgres

            url = await asyncio.to_thread(start_embedded_postgres, settings.embedded_data_dir)
            target = f"embedded ({settings.embedded_data_dir})"
        db = Database(url, max_size=1, acquire_timeout_s=args.timeout)
        await db.open()
        try:
            applied = await db.migrate()
        finally:
            await db.close()
        return {"database": target, "applied": applied}

    _print(asyncio.run(run()))
    return 0


def cmd_encoder_fit(args: argparse.Namespace, settings: Settings) -> int:
    from .encoders.tfidf_svd import TfidfSvdEncoder
    from .routing.examples import read_labelled_csv

    texts = [ex.content for ex in read_labelled_csv(Path(args.examples))]
    encoder = TfidfSvdEncoder.fit(texts, dim=args.dim)
    out = Path(args.out)
    encoder.save(out)
    _print({"out": str(out), "examples": len(texts), **encoder.describe()})
    return 0


def _weaviate_index(settings: Settings) -> Any:
    from .context import build_encoder
    from .index.weaviate import WeaviateIndex

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
    from .examples_pipeline import export_csv, import_csv

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
    _print(asyncio.run(run()))
    return 0


def cmd_backup_check(args: argparse.Namespace, settings: Settings) -> int:
    from .backups import run_backup_check
    from .bootstrap import build_context

    async def run() -> dict[str, Any] | None:
        ctx = await build_context(settings)
        try:
            check = await run_backup_check(ctx)
            return check.public() if check is not None else None
        finally:
            await ctx.close()

    result = asyncio.run(run())
    if result is None:
        raise SystemExit("WEAVIATE_URL is not set: there are no Weaviate backups to check")
    _print(result)
    return 0 if result["ok"] else 1


COMMANDS: dict[str, Callable[[argparse.Namespace, Settings], int]] = {
    "route": cmd_route,
    "models": cmd_models,
    "evaluate": cmd_evaluate,
    "calibrate": cmd_calibrate,
    "encoder-fit": cmd_encoder_fit,
    "token": cmd_token,
    "migrate": cmd_migrate,
    "examples": cmd_examples,
    "backup-check": cmd_backup_check,
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m shared.cli", description="LLM Router command line.")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("route", help="print the routing decision for a prompt")
    r.add_argument("prompt")
    r.add_argument("--model", default="auto", help="auto, auto:cost, ... or a model id")

    sub.add_parser("models", help="print the model catalog")

    e = sub.add_parser("evaluate", help="measure routing quality on labelled data (QUALITY.md)")
    e.add_argument("--data", nargs="+", help="CSV files (globs allowed): the in-domain 50/50 split")
    e.add_argument("--train", nargs="+", help="cross-domain: 'starter' (the shipped examples) or CSV files")
    e.add_argument("--test", nargs="+", help="cross-domain: CSV files, each scored on its own")
    e.add_argument("--learn", nargs="+", help="learning curve: N rows of each test file's first half (or 'all')")
    e.add_argument("--judge-noise", type=float, default=0.0, help="share of learned labels flipped (0..1)")
    e.add_argument("--strong", required=True)
    e.add_argument("--weak", required=True)
    e.add_argument("--train-frac", type=float, default=0.5)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--k", type=int, default=None)
    e.add_argument("--plot", default=None, help="write the accuracy curve to this PNG")
    e.add_argument("--json", action="store_true", help="one line of JSON")

    c = sub.add_parser("calibrate", help="the cost-policy threshold that meets a target on held-out data")
    c.add_argument("--data", nargs="+", required=True)
    c.add_argument("--strong", required=True)
    c.add_argument("--weak", required=True)
    c.add_argument("--train-frac", type=float, default=0.5)
    c.add_argument("--seed", type=int, default=0)
    target = c.add_mutually_exclusive_group(required=True)
    target.add_argument("--target-strong-share", type=float, help="share of calls to the strong model, 0..1")
    target.add_argument("--target-quality", type=float, help="fraction of the strong model's accuracy, 0..1")

    t = sub.add_parser("token", help="mint a service token (HS256, signed with JWT_SECRET)")
    t.add_argument("--tenant", required=True)
    t.add_argument("--role", required=True, action="append", choices=["invoke", "admin", "ops"], help="repeatable")
    t.add_argument("--ttl", type=parse_ttl, default=3600, help="lifetime: 90s, 30m, 1h (default), 7d")
    t.add_argument("--subject", default=None, help="the token's sub claim (default service:<tenant>)")

    m = sub.add_parser("migrate", help="apply the database migrations (DATABASE_URL, else the embedded server)")
    m.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for a connection")
    f = sub.add_parser("encoder-fit", help="learn the tfidf-svd encoder's idf and basis from example texts")
    f.add_argument("--examples", default=str(get_settings().examples_path))
    f.add_argument("--out", default=str(get_settings().encoder_state_path))
    f.add_argument("--dim", type=int, default=128)

    ex = sub.add_parser("examples", help="import or export labelled routing examples (Weaviate)")
    ex_sub = ex.add_subparsers(dest="action", required=True)
    ei = ex_sub.add_parser("import", help="load a labelled CSV into the configured index")
    ei.add_argument("file", help="CSV: a prompt column and one outcome column per model")
    ei.add_argument("--model-column", action="append", default=[], help="outcome column (repeatable; default all)")
    ei.add_argument("--rename", action="append", default=[], metavar="COL=KEY", help="store COL's outcome under KEY")
    ei.add_argument("--prompt-column", default="prompt")
    ei.add_argument("--category", default=None, help="category stored on every imported example")
    ei.add_argument("--no-progress", action="store_true", help="no progress bar")
    ee = ex_sub.add_parser("export", help="write the shared examples to a labelled CSV")
    ee.add_argument("file")

    sub.add_parser("backup-check", help="run the Weaviate backup check once (exit 1 when it fails)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return COMMANDS[args.command](args, get_settings())


if __name__ == "__main__":
    sys.exit(main())
