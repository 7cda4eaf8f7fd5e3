"""Importing MMLU data into Weaviate (the fake, through the real client) and routing through it
gives the same decisions as LocalIndex on the same examples: the same chosen model and the
same neighbour ids, for every prompt and policy. Also: the import is idempotent, and export
round-trips the labels."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from shared.catalog import Catalog
from shared.cli import build_parser, cmd_backup_check, cmd_examples
from shared.config import Settings
from shared.encoders.hashing import HashingEncoder
from shared.examples.labelled import read_labelled_csv
from shared.examples.transfer import export_csv, import_csv
from shared.index.local import LocalIndex
from shared.routing.predictor import PredictorParams
from shared.routing.request import RoutingRequest
from shared.routing.router import Router
from tests.conftest import MMLU_DIR

MMLU = MMLU_DIR
SUBJECTS = ["mmlu_college_biology", "mmlu_high_school_us_history", "mmlu_elementary_mathematics"]
RENAME = {"gpt-4-1106-preview": "big", "mistralai/Mixtral-8x7B-Instruct-v0.1": "small"}
TRAIN_PER_SUBJECT = 130
PROMPTS_PER_SUBJECT = 17
DIM = 1024


def split(tmp_path: Path) -> tuple[list[Path], list[str]]:
    """Per subject: the first rows become a training CSV, the next rows the held-out prompts."""
    files, prompts = [], []
    for subject in SUBJECTS:
        with open(MMLU / f"{subject}.csv", encoding="utf-8", newline="") as fh:
            rows = list(csv.reader(fh))
        header, body = rows[0], rows[1:]
        train = tmp_path / f"{subject}.csv"
        with open(train, "w", encoding="utf-8", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(header)
            w.writerows(body[:TRAIN_PER_SUBJECT])
        files.append(train)
        prompts += [r[0] for r in body[TRAIN_PER_SUBJECT : TRAIN_PER_SUBJECT + PROMPTS_PER_SUBJECT]]
    return files, prompts


async def test_weaviate_routes_like_local_index(
    tmp_path: Path, catalog: Catalog, make_weaviate_index: Callable[..., Any]
) -> None:
    files, prompts = split(tmp_path)
    encoder = HashingEncoder(dim=DIM)
    local = LocalIndex(DIM)
    remote = make_weaviate_index(DIM, encoder.name)
    total = 0
    for f in files:
        n_local = await import_csv(local, encoder, f, rename=RENAME, progress=False, category=f.stem)
        n_remote = await import_csv(remote, encoder, f, rename=RENAME, progress=False, category=f.stem)
        assert n_local == n_remote
        total += n_local
    assert total >= 300
    assert await remote.count() == await local.count() == total
    # importing again changes nothing: same deterministic ids
    await import_csv(remote, encoder, files[0], rename=RENAME, progress=False, category=files[0].stem)
    assert await remote.count() == total

    params = PredictorParams(k=20, prior_strength=1.0, similarity_power=1.0)  # little shrinkage: decisions vary
    routers = [Router(catalog, encoder, ix, params=params) for ix in (local, remote)]
    compared = 0
    chosen: set[str] = set()
    for prompt in prompts:
        for policy in ("quality", "cost", "balanced"):
            req = RoutingRequest(prompt=prompt, policy=policy, prompt_tokens=len(prompt) // 4)
            a, b = [await r.decide(req) for r in routers]
            assert b.index_status == "ok"
            assert [n.id for n in b.neighbours] == [n.id for n in a.neighbours]
            for x, y in zip(a.neighbours, b.neighbours, strict=True):
                assert y.similarity == pytest.approx(x.similarity, abs=1e-5)
                assert y.outcomes == x.outcomes
            assert b.chosen.id == a.chosen.id
            chosen.add(b.chosen.id)
            assert len(b.neighbours) == params.k
            assert [c.model.id for c in b.ranked] == [c.model.id for c in a.ranked]
            compared += 1
    assert compared == len(prompts) * 3 >= 50
    # the comparison means something: the decisions differ between prompts and policies
    assert chosen == {"big", "small"}


async def test_export_round_trips_labels(tmp_path: Path, make_weaviate_index: Callable[..., Any]) -> None:
    files, _ = split(tmp_path)
    encoder = HashingEncoder(dim=DIM)
    remote = make_weaviate_index(DIM, encoder.name)
    n = await import_csv(remote, encoder, files[0], rename=RENAME, progress=False)
    out = tmp_path / "export.csv"
    assert await export_csv(remote, out) == n
    original = {ex.content: ex.outcomes for ex in read_labelled_csv(files[0], rename=RENAME)}
    exported = {ex.content: ex.outcomes for ex in read_labelled_csv(out)}
    assert exported == original


async def test_import_reports_bad_columns(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("prompt,modelA\nhello,maybe\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 2, column modelA"):
        await import_csv(LocalIndex(8), HashingEncoder(dim=8), bad, progress=False)
    with pytest.raises(ValueError, match="not found"):
        await import_csv(LocalIndex(8), HashingEncoder(dim=8), bad, model_columns=["nope"], progress=False)


def test_cli_import_and_export(weaviate_settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files, _ = split(tmp_path)
    s = weaviate_settings.model_copy(update={"encoder_dim": 64})
    argv = ["examples", "import", str(files[0]), "--no-progress", "--category", "biology"]
    for col, key in RENAME.items():
        argv += ["--model-column", col, "--rename", f"{col}={key}"]
    assert cmd_examples(build_parser().parse_args(argv), s) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["imported"] == out["total"] == TRAIN_PER_SUBJECT
    # again: same ids, same total
    assert cmd_examples(build_parser().parse_args(argv), s) == 0
    assert json.loads(capsys.readouterr().out)["total"] == TRAIN_PER_SUBJECT
    target = tmp_path / "back.csv"
    assert cmd_examples(build_parser().parse_args(["examples", "export", str(target)]), s) == 0
    assert json.loads(capsys.readouterr().out)["exported"] == TRAIN_PER_SUBJECT
    back = list(read_labelled_csv(target))
    assert {ex.content for ex in back} == {ex.content for ex in read_labelled_csv(files[0])}
    with pytest.raises(SystemExit, match="COLUMN=KEY"):
        cmd_examples(build_parser().parse_args(["examples", "import", str(files[0]), "--rename", "nope"]), s)


def test_cli_backup_check(fake_weaviate: Any, weaviate_settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    fake_weaviate.add_backup("llm-router-fresh", "SUCCESS", age_hours=1.0)
    fake_weaviate.backups["azure"]["llm-router-fresh"].classes = [weaviate_settings.weaviate_collection]
    s = weaviate_settings.model_copy(update={"weaviate_seed_examples": False})
    assert cmd_backup_check(build_parser().parse_args(["backup-check"]), s) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["action"], out["ok"], out["latest_backup_id"]) == ("none", True, "llm-router-fresh")
