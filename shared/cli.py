"""python -m shared.cli: route, models, evaluate, calibrate, and the operator commands."""

from __future__ import annotations

import argparse
import asyncio
import glob
import json
import sys
from collections.abc import Callable
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


def cmd_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from .context import build_encoder
    from .encoders.base import Encoder
    from .evaluation import evaluate, load_dataset

    data = load_dataset(_expand(args.data), args.strong, args.weak)
    encoder = build_encoder(settings)
    if not isinstance(encoder, Encoder):
        raise SystemExit("evaluate needs an in-process encoder (ENCODER=hashing)")
    result = evaluate(
        data,
        encoder,
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


def cmd_calibrate(args: argparse.Namespace, settings: Settings) -> int:
    from .context import build_encoder
    from .encoders.base import Encoder
    from .evaluation import GainScorer, load_dataset, split, threshold_for

    data = load_dataset(_expand(args.data), args.strong, args.weak)
    encoder = build_encoder(settings)
    assert isinstance(encoder, Encoder)
    train, held = split(len(data.texts), args.train_frac, args.seed)
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


COMMANDS: dict[str, Callable[[argparse.Namespace, Settings], int]] = {
    "route": cmd_route,
    "models": cmd_models,
    "evaluate": cmd_evaluate,
    "calibrate": cmd_calibrate,
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m shared.cli", description="LLM Router command line.")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("route", help="print the routing decision for a prompt")
    r.add_argument("prompt")
    r.add_argument("--model", default="auto", help="auto, auto:cost, ... or a model id")

    sub.add_parser("models", help="print the model catalog")

    e = sub.add_parser("evaluate", help="measure routing quality on labelled data (QUALITY.md)")
    e.add_argument("--data", nargs="+", required=True, help="CSV files (globs allowed)")
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
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return COMMANDS[args.command](args, get_settings())


if __name__ == "__main__":
    sys.exit(main())
