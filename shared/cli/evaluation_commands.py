"""evaluate, calibrate, encoder-fit: routing quality on labelled data (docs/routing-quality.md)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..catalog import Catalog
from ..composition.assemble import build_encoder
from ..config import Settings
from ..encoders.hashing import HashingEncoder
from ..evaluation import CurveSink, GainScorer, evaluate, load_dataset, split, threshold_for
from ..evaluation_cross import apgr_summary, evaluate_file, load_train, tier_models
from ..examples.labelled import read_labelled_csv
from ..routing.predictor import PredictorParams
from .output import expand_paths, print_json


def _predictor_params(settings: Settings, k: int | None) -> Any:

    return PredictorParams(
        k=k or settings.routing_k,
        prior_strength=settings.routing_prior_strength,
        similarity_power=settings.routing_similarity_power,
    )


def encoder_factory(settings: Settings) -> Callable[[Sequence[str]], Any]:
    """How evaluate/calibrate build the encoder from the training texts."""
    if settings.encoder == "tfidf-svd":
        # fitting is a development tool (scikit-learn, requirements-local.txt), not in the container
        from devtools.encoder_fit import fit_tfidf_svd

        return fit_tfidf_svd
    if settings.encoder == "hashing":
        return lambda texts: HashingEncoder(dim=settings.encoder_dim)
    raise SystemExit("evaluate needs an in-process encoder (ENCODER=tfidf-svd or hashing)")


def cmd_evaluate(args: argparse.Namespace, settings: Settings) -> int:

    for flag, values in (("--seed", args.seed), ("--judge-noise", args.judge_noise)):
        if len(set(values)) < len(values):
            raise SystemExit(f"{flag}: name each value once (got {' '.join(map(str, values))})")
    if not all(0.0 <= share <= 1.0 for share in args.judge_noise):
        raise SystemExit(f"--judge-noise: a share of the labels, 0..1 (got {' '.join(map(str, args.judge_noise))})")
    if args.test:
        return _evaluate_cross(args, settings)
    if not args.data:
        raise SystemExit("evaluate needs --data FILE... (in-domain split) or --train ... --test FILE...")
    if args.plot and len(args.seed) > 1:
        raise SystemExit("--plot draws one split: give one --seed")
    data = load_dataset(expand_paths(args.data), args.strong, args.weak, prompt_column=args.prompt_column)
    results = []
    for seed in args.seed:
        result = evaluate(
            data,
            encoder_factory(settings),
            _predictor_params(settings, args.k),
            train_frac=args.train_frac,
            seed=seed,
            on_curve=_plotter(Path(args.plot)) if args.plot else None,
        )
        result["seed"] = seed
        if args.plot:
            result["plot"] = args.plot
        _print(result, args.json)
        results.append(result)
    if len(results) > 1:
        _print(apgr_summary(args.seed, [float(r["apgr"]) for r in results]), args.json)
    return 0


def _print(result: dict[str, Any], one_line: bool) -> None:
    if one_line:
        print(json.dumps(result), flush=True)
    else:
        print_json(result)
        sys.stdout.flush()  # a curve's lines arrive seed by seed: show each as it is measured


def _plotter(path: Path) -> CurveSink:
    # the plot is a development tool (matplotlib, requirements-local.txt), not in the container
    from devtools.plots import plot_curve

    def draw(scores: Any, strong: Any, weak: Any, title: str) -> None:
        plot_curve(scores, strong, weak, path, title=title)

    return draw


def _evaluate_cross(args: argparse.Namespace, settings: Settings) -> int:
    """--train starter|FILE... --test FILE... [--learn N ...]: one JSON line per test file (and N)."""

    if not args.train:
        raise SystemExit("--test needs --train starter|FILE...")
    if len(args.seed) > 1 and not args.learn:
        print("note: without --learn every row of a test file is scored, so there is no split to seed", file=sys.stderr)
    starter = args.train == ["starter"]
    make_encoder = encoder_factory(settings)
    if starter:
        train = load_train(
            None, args.strong, args.weak, make_encoder, (settings.examples_path, _shipped_encoder(settings))
        )
    else:
        train = load_train(
            expand_paths(args.train), args.strong, args.weak, make_encoder, None, prompt_column=args.prompt_column
        )
    models = tier_models(Catalog.load(settings.model_catalog_path))
    params = _predictor_params(settings, args.k)
    for test in expand_paths(args.test):
        lines = evaluate_file(
            train, test, args, params, models, make_encoder, tenant_prior=settings.tenant_prior_refresh_s > 0
        )
        for line in lines:
            _print(line, args.json)
    return 0


def _shipped_encoder(settings: Settings) -> Any:
    encoder = build_encoder(settings)
    if not hasattr(encoder, "encode"):
        raise SystemExit("evaluate needs an in-process encoder (ENCODER=tfidf-svd or hashing)")
    return encoder


def cmd_calibrate(args: argparse.Namespace, settings: Settings) -> int:

    data = load_dataset(expand_paths(args.data), args.strong, args.weak, prompt_column=args.prompt_column)
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
    print_json(out)
    return 0


def cmd_encoder_fit(args: argparse.Namespace, settings: Settings) -> int:

    # fitting is a development tool (scikit-learn, requirements-local.txt), not in the container
    from devtools.encoder_fit import fit_tfidf_svd

    texts = [ex.content for ex in read_labelled_csv(Path(args.examples))]
    encoder = fit_tfidf_svd(texts, dim=args.dim)
    out = Path(args.out)
    encoder.save(out)
    print_json({"out": str(out), "examples": len(texts), **encoder.describe()})
    return 0
