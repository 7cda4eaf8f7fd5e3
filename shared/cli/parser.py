"""The command line: `python -m shared.cli COMMAND ...` (one subcommand per job)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from ..config import Settings, get_settings
from ..examples.labelled import LabelledFileError, NoPromptColumn
from .evaluation_commands import cmd_calibrate, cmd_encoder_fit, cmd_evaluate
from .operation_commands import (
    cmd_backup_check,
    cmd_examples,
    cmd_migrate,
    cmd_models,
    cmd_preflight,
    cmd_route,
    cmd_token,
    parse_ttl,
)

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
    "preflight": cmd_preflight,
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m shared.cli", description="LLM Router command line.")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("route", help="print the routing decision for a prompt")
    r.add_argument("prompt")
    r.add_argument("--model", default="auto", help="auto, auto:cost, ... or a model id")

    sub.add_parser("models", help="print the model catalog")
    _add_quality_commands(sub)
    _add_operation_commands(sub)
    return p


def _add_quality_commands(sub: Any) -> None:
    e = sub.add_parser("evaluate", help="measure routing quality on labelled data (QUALITY.md)")
    e.add_argument("--data", nargs="+", help="CSV files (globs allowed): the in-domain 50/50 split")
    e.add_argument("--train", nargs="+", help="cross-domain: 'starter' (the shipped examples) or CSV files")
    e.add_argument("--test", nargs="+", help="cross-domain: CSV files, each scored on its own")
    e.add_argument("--learn", nargs="+", help="learning curve: N rows of each test file's first half (or 'all')")
    noise = "share of learned labels flipped (0..1); several (0 0.2) add the noise's loss to the summaries"
    e.add_argument("--judge-noise", type=float, nargs="+", default=[0.0], help=noise)
    e.add_argument(
        "--prompt-column", default="prompt", help="the prompt's column in your files (one without it reads 'prompt')"
    )
    e.add_argument("--strong", required=True)
    e.add_argument("--weak", required=True)
    e.add_argument("--train-frac", type=float, default=0.5)
    seeds = "the split's seed; several (0 1 2 ...) run each and add summary lines with means"
    e.add_argument("--seed", type=int, nargs="+", default=[0], help=seeds)
    e.add_argument("--k", type=int, default=None)
    e.add_argument("--plot", default=None, help="write the accuracy curve to this PNG")
    e.add_argument("--json", action="store_true", help="one line of JSON")

    c = sub.add_parser("calibrate", help="the cost-policy threshold that meets a target on held-out data")
    c.add_argument("--data", nargs="+", required=True)
    c.add_argument("--prompt-column", default="prompt", help="the prompt's column in your files")
    c.add_argument("--strong", required=True)
    c.add_argument("--weak", required=True)
    c.add_argument("--train-frac", type=float, default=0.5)
    c.add_argument("--seed", type=int, default=0)
    target = c.add_mutually_exclusive_group(required=True)
    target.add_argument("--target-strong-share", type=float, help="share of calls to the strong model, 0..1")
    target.add_argument("--target-quality", type=float, help="fraction of the strong model's accuracy, 0..1")
    f = sub.add_parser("encoder-fit", help="learn the tfidf-svd encoder's idf and basis from example texts")
    f.add_argument("--examples", default=str(get_settings().examples_path))
    f.add_argument("--out", default=str(get_settings().encoder_state_path))
    f.add_argument("--dim", type=int, default=128)


def _add_operation_commands(sub: Any) -> None:
    t = sub.add_parser("token", help="mint a service token (HS256, signed with JWT_SECRET)")
    t.add_argument("--tenant", required=True)
    t.add_argument(
        "--role",
        required=True,
        action="append",
        choices=["invoke", "admin", "ops", "platform-admin"],
        help="repeatable",
    )
    t.add_argument("--ttl", type=parse_ttl, default=3600, help="lifetime: 90s, 30m, 1h (default), 7d")
    t.add_argument("--subject", default=None, help="the token's sub claim (default service:<tenant>)")

    m = sub.add_parser("migrate", help="apply the database migrations (DATABASE_URL, else the embedded server)")
    m.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for a connection")

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

    pf = sub.add_parser("preflight", help="the pre-deployment checklist against the configured environment")
    pf.add_argument("--json", action="store_true", help="one JSON document (for pipelines)")
    pf.add_argument("--timeout", type=float, default=10.0, help="seconds per check")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args, get_settings())
    except (LabelledFileError, FileNotFoundError) as exc:
        # a file the user named: say what is wrong with it, not where in our code it was noticed
        hint = " (--prompt-column names the prompt's column)" if _names_prompt_column(args, exc) else ""
        print(f"error: {exc}{hint}", file=sys.stderr)
        return 2


def _names_prompt_column(args: argparse.Namespace, exc: Exception) -> bool:
    return isinstance(exc, NoPromptColumn) and hasattr(args, "prompt_column")
