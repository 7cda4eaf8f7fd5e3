"""`python -m shared.cli evaluate --train ... --test ...` (issue #13): cross-domain scores and
learning curves through the production path, as a user runs them."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

from shared.examples.labelled import read_labelled_csv
from tests.conftest import MMLU_DIR, ROOT

STRONG, WEAK = "gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1"
KEYS = ("test", "apgr", "cpt50", "cpt80", "strong_calls_at_95", "weak_acc", "strong_acc", "n_train", "n_test")


def _evaluate(*args: str) -> list[dict[str, object]]:
    out = subprocess.run(
        [sys.executable, "-m", "shared.cli", "evaluate", *args, "--strong", STRONG, "--weak", WEAK, "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def _untimed(lines: list[dict[str, object]]) -> list[dict[str, object]]:
    return [{k: v for k, v in line.items() if k != "decision_ms_p50"} for line in lines]


def _rows(path: Path) -> int:
    return len(list(read_labelled_csv(path, model_columns=[STRONG, WEAK])))


def test_cross_domain_scores_every_row_of_each_test_file() -> None:
    train = [MMLU_DIR / "mmlu_marketing.csv", MMLU_DIR / "mmlu_high_school_mathematics.csv"]
    tests = [MMLU_DIR / "mmlu_virology.csv", MMLU_DIR / "mmlu_world_religions.csv"]
    lines = _evaluate("--train", *map(str, train), "--test", *map(str, tests))
    assert [Path(str(line["test"])).name for line in lines] == [p.name for p in tests]
    for line, path in zip(lines, tests, strict=True):
        assert all(key in line for key in KEYS)
        assert line["n_test"] == _rows(path)
        assert line["n_train"] == sum(_rows(p) for p in train)
        assert 0.0 <= float(line["weak_acc"]) <= 1.0 and 0.0 <= float(line["strong_acc"]) <= 1.0  # type: ignore[arg-type]
        assert isinstance(line["apgr"], float)


def test_learning_curve_adds_the_first_half_as_feedback_and_scores_the_second(tmp_path: Path) -> None:
    # scores in 0..1, not only booleans: the weak column is a graded score
    test = tmp_path / "graded.csv"
    with (MMLU_DIR / "mmlu_virology.csv").open(encoding="utf-8", newline="") as src:
        rows = list(csv.DictReader(src))
    with test.open("w", encoding="utf-8", newline="") as dst:
        w = csv.DictWriter(dst, fieldnames=["prompt", STRONG, WEAK])
        w.writeheader()
        for i, row in enumerate(rows):
            strong = 1.0 if row[STRONG] == "True" else 0.0
            weak = (0.75 if row[WEAK] == "True" else 0.25) if i % 2 else (1.0 if row[WEAK] == "True" else 0.0)
            w.writerow({"prompt": row["prompt"], STRONG: strong, WEAK: weak})
    train = MMLU_DIR / "mmlu_marketing.csv"
    args = ("--train", str(train), "--test", str(test), "--learn", "0", "20", "all", "--seed", "3")
    lines = _evaluate(*args, "--judge-noise", "0.2")
    half = len(rows) - len(rows) // 2 if len(rows) % 2 else len(rows) // 2
    assert [line["learned"] for line in lines] == [0, 20, half]
    for line in lines:
        assert all(key in line for key in KEYS)
        assert line["judge_noise"] == 0.2 and line["n_test"] == len(rows) - half
        assert line["n_train"] == _rows(train)
    assert "in_domain_only_apgr" in lines[-1]  # the router trained on the learned half alone
    # seeded: the same split and the same flipped labels every time
    assert _untimed(_evaluate(*args, "--judge-noise", "0.2")) == _untimed(lines)
    clean = _evaluate(*args)
    assert clean[0]["apgr"] == lines[0]["apgr"]  # nothing learned: noise cannot matter
    assert clean[-1]["apgr"] != lines[-1]["apgr"]  # noise flips learned labels


def test_the_shipped_starter_set_trains_the_router(tmp_path: Path) -> None:
    test = tmp_path / "few.csv"
    with (MMLU_DIR / "mmlu_world_religions.csv").open(encoding="utf-8", newline="") as src:
        rows = list(csv.DictReader(src))[:60]
    with test.open("w", encoding="utf-8", newline="") as dst:
        w = csv.DictWriter(dst, fieldnames=["prompt", STRONG, WEAK])
        w.writeheader()
        w.writerows({k: r[k] for k in ("prompt", STRONG, WEAK)} for r in rows)
    (line,) = _evaluate("--train", "starter", "--test", str(test))
    starter = ROOT / "shared" / "data" / "starter_examples.csv.gz"
    assert line["n_train"] == len(list(read_labelled_csv(starter)))
    assert line["n_test"] == 60 and all(key in line for key in KEYS)
