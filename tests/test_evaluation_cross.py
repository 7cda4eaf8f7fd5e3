"""`python -m shared.cli evaluate --train ... --test ...` (issue #13): cross-domain scores and
learning curves through the production path, as a user runs them."""

from __future__ import annotations

import csv
import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from shared.examples.labelled import outcome_scale, read_labelled_csv
from tests.conftest import MMLU_DIR, ROOT

STRONG, WEAK = "gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1"
KEYS = ("test", "apgr", "cpt50", "cpt80", "strong_calls_at_95", "weak_acc", "strong_acc", "n_train", "n_test")


def _run_evaluate(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shared.cli", "evaluate", *args, "--strong", STRONG, "--weak", WEAK, "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=check,
        timeout=600,
    )


def _evaluate(*args: str) -> list[dict[str, object]]:
    out = _run_evaluate(*args)
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def _untimed(lines: list[dict[str, object]]) -> list[dict[str, object]]:
    return [{k: v for k, v in line.items() if k != "decision_ms_p50"} for line in lines]


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(encoding="utf-8", newline="") as src:
        reader = csv.DictReader(src)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def _write_csv(path: Path, fields: list[str], rows: list[dict[str, str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return path


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


def _write_scores(path: Path, rows: list[dict[str, str]], scale: float, offset: float) -> None:
    """The rows' outcomes as graded scores (the weak column halfway between its boolean and 0.5 on
    odd rows), written as offset + scale * score."""
    with path.open("w", encoding="utf-8", newline="") as dst:
        w = csv.DictWriter(dst, fieldnames=["prompt", STRONG, WEAK])
        w.writeheader()
        for i, row in enumerate(rows):
            strong = 1.0 if row[STRONG] == "True" else 0.0
            weak = 1.0 if row[WEAK] == "True" else 0.0
            weak = (weak + 0.5) / 2 if i % 2 else weak
            w.writerow({"prompt": row["prompt"], STRONG: offset + scale * strong, WEAK: offset + scale * weak})


def test_judge_scores_on_their_own_scale_measure_as_the_same_scores_in_0_to_1(tmp_path: Path) -> None:
    # a judge's 1..10 scores (MT-Bench style) in a test file and a training file: mapped linearly
    # onto 0..1 by the file's lowest and highest score, with a notice; every measure matches
    with (MMLU_DIR / "mmlu_virology.csv").open(encoding="utf-8", newline="") as src:
        rows = list(csv.DictReader(src))
    with (MMLU_DIR / "mmlu_marketing.csv").open(encoding="utf-8", newline="") as src:
        train_rows = list(csv.DictReader(src))
    unit, judge = tmp_path / "unit.csv", tmp_path / "judge.csv"
    _write_scores(unit, rows, 1.0, 0.0)
    _write_scores(judge, rows, 9.0, 1.0)
    unit_train, judge_train = tmp_path / "unit_train.csv", tmp_path / "judge_train.csv"
    _write_scores(unit_train, train_rows, 1.0, 0.0)
    _write_scores(judge_train, train_rows, 9.0, 1.0)
    learn = ("--learn", "0", "20", "--seed", "1", "--judge-noise", "0.2")
    on_unit = _evaluate("--train", str(unit_train), "--test", str(unit), *learn)
    on_judge = _evaluate("--train", str(judge_train), "--test", str(judge), *learn)
    assert [line["learned"] for line in on_judge] == [0, 20]
    strip = [{k: v for k, v in line.items() if k != "test"} for line in _untimed(on_judge)]
    assert strip == [{k: v for k, v in line.items() if k != "test"} for line in _untimed(on_unit)]
    assert on_judge[0]["apgr"] != on_judge[1]["apgr"]  # the learned (mapped) labels were used
    out = _run_evaluate("--train", str(judge_train), "--test", str(judge))
    assert "outcomes span 1..10, not 0..1; mapped linearly onto 0..1" in out.stderr


def test_a_spreadsheet_export_with_a_byte_order_mark_reads_like_any_csv(tmp_path: Path) -> None:
    plain, marked = tmp_path / "plain.csv", tmp_path / "marked.csv"
    text = f"prompt,{STRONG},{WEAK}\nWhat is 2+2?,True,False\nName a prime.,8,3\n"
    plain.write_text(text.replace("8,3", "1,0"), encoding="utf-8")
    marked.write_text(text, encoding="utf-8-sig")
    assert marked.read_bytes().startswith(b"\xef\xbb\xbf")
    assert outcome_scale(marked, [STRONG, WEAK]) == (3.0, 8.0)
    read = list(read_labelled_csv(marked, model_columns=[STRONG, WEAK], score_range=(3.0, 8.0)))
    assert [ex.outcomes for ex in read] == [ex.outcomes for ex in read_labelled_csv(plain)]


def test_a_file_the_user_names_wrongly_gets_a_one_line_error(tmp_path: Path) -> None:
    flat = tmp_path / "flat.csv"
    flat.write_text(f"prompt,{STRONG},{WEAK}\nhello,7,7\nbye,7,7\n", encoding="utf-8")
    unnamed = tmp_path / "question.csv"
    unnamed.write_text(f"question,{STRONG},{WEAK}\nhello,1,0\n", encoding="utf-8")
    endless = tmp_path / "endless.csv"
    endless.write_text(f"prompt,{STRONG},{WEAK}\nhello,7,inf\nbye,2,3\n", encoding="utf-8")
    train = str(MMLU_DIR / "mmlu_marketing.csv")
    for path, message in (
        (flat, "every score is 7, outside 0..1, and there is no scale to map onto it"),
        (unnamed, "no 'prompt' column; the columns are ['question',"),
        (endless, f"line 2, column {WEAK}: outcome 'inf' is outside 2..7"),
    ):
        out = _run_evaluate("--train", train, "--test", str(path), check=False)
        assert out.returncode == 2 and out.stdout == ""
        last = out.stderr.strip().splitlines()[-1]  # a scale notice may come first
        assert last.startswith("error: ") and message in last and "Traceback" not in out.stderr


def test_missing_outcomes_as_spreadsheets_and_pandas_write_them_leave_their_rows_out(tmp_path: Path) -> None:
    fields, rows = _read_csv(MMLU_DIR / "mmlu_virology.csv")
    holes = {
        1: (STRONG, ""),
        4: (WEAK, "nan"),
        7: (WEAK, "NaN"),
        9: (STRONG, "None"),
        12: (WEAK, "N/A"),
        15: (STRONG, "null"),
    }
    for i, (col, marker) in holes.items():
        rows[i][col] = marker
    test = _write_csv(tmp_path / "holes.csv", fields, rows)
    out = _run_evaluate("--train", str(MMLU_DIR / "mmlu_marketing.csv"), "--test", str(test))
    line = json.loads(out.stdout)
    assert line["n_test"] == len(rows) - len(holes)
    assert f"{len(holes)} of {len(rows)} rows lack the strong or the weak outcome; left out" in out.stderr
    # not mistaken for a score: an 'inf' is still refused (the one-line error test above)
    assert isinstance(line["apgr"], float)


def test_rows_without_a_prompt_are_left_out_and_counted(tmp_path: Path) -> None:
    fields, rows = _read_csv(MMLU_DIR / "mmlu_virology.csv")
    for i in (2, 5, 11):
        rows[i]["prompt"] = ""
    rows[3][WEAK] = "nan"
    test = _write_csv(tmp_path / "blanks.csv", fields, rows)
    out = _run_evaluate("--train", str(MMLU_DIR / "mmlu_marketing.csv"), "--test", str(test))
    assert json.loads(out.stdout)["n_test"] == len(rows) - 4
    assert f"3 of {len(rows)} rows have no prompt; left out" in out.stderr
    # the outcome count is over the rows that have a prompt
    assert f"1 of {len(rows) - 3} rows lack the strong or the weak outcome; left out" in out.stderr


def test_prompt_column_names_the_prompt_in_a_users_file(tmp_path: Path) -> None:
    # AlpacaEval-style files call it "instruction"; the training file keeps "prompt" and is read as before
    virology = MMLU_DIR / "mmlu_virology.csv"
    rows = [{("instruction" if k == "prompt" else k): v for k, v in row.items()} for row in _read_csv(virology)[1]]
    renamed = _write_csv(tmp_path / "instructions.csv", list(rows[0]), rows)
    train = str(MMLU_DIR / "mmlu_marketing.csv")
    as_prompt = _untimed(_evaluate("--train", train, "--test", str(virology)))
    as_instruction = _untimed(_evaluate("--train", train, "--test", str(renamed), "--prompt-column", "instruction"))
    strip = [{k: v for k, v in line.items() if k != "test"} for line in as_prompt]
    assert [{k: v for k, v in line.items() if k != "test"} for line in as_instruction] == strip
    out = _run_evaluate("--train", train, "--test", str(renamed), check=False)
    last = out.stderr.strip().splitlines()[-1]
    assert out.returncode == 2 and "no 'prompt' column" in last and "--prompt-column" in last


def test_scores_outside_0_to_1_are_still_refused_where_examples_are_stored(tmp_path: Path) -> None:
    # only measuring maps a scale: an examples file for the index must hold booleans or 0..1
    path = tmp_path / "examples.csv"
    path.write_text(f"prompt,{STRONG}\nWhat is 2+2?,7\n", encoding="utf-8")
    try:
        list(read_labelled_csv(path))
    except ValueError as exc:
        assert "line 2" in str(exc) and "outside 0..1" in str(exc)
    else:
        raise AssertionError("a score of 7 was accepted as an outcome")
    # a scale stated (or measured from a file with more than one score) maps it onto 0..1
    assert [ex.outcomes for ex in read_labelled_csv(path, score_range=(1.0, 10.0))] == [{STRONG: 6.0 / 9.0}]
    path.write_text(f"prompt,{STRONG}\nWhat is 2+2?,7\nWhat is 3+3?,2.5\nhi,1\nhello,True\n", encoding="utf-8")
    assert outcome_scale(path, [STRONG]) == (1.0, 7.0)  # "1" is a score here; True is no number
    mapped = [ex.outcomes[STRONG] for ex in read_labelled_csv(path, score_range=(1.0, 7.0))]
    assert mapped == [1.0, 0.25, 0.0, 1.0]  # on a 1..7 scale "1" is the lowest score, True the best
    assert outcome_scale(path, ["missing"]) is None  # reading the file names the missing column


def test_several_seeds_give_each_curve_and_a_summary_paired_by_seed() -> None:
    train, test = MMLU_DIR / "mmlu_marketing.csv", MMLU_DIR / "mmlu_virology.csv"
    lines = _evaluate("--train", str(train), "--test", str(test), "--learn", "0", "20", "all", "--seed", "1", "2", "4")
    curves, summaries = lines[:9], lines[9:]
    assert [(line["seed"], line["learned"]) for line in curves] == [
        (s, n) for s in (1, 2, 4) for n in (0, 20, curves[2]["learned"])
    ]
    # each seed's lines are the single-seed run's, to the digit
    assert _untimed(curves[3:6]) == _untimed(
        _evaluate("--train", str(train), "--test", str(test), "--learn", "0", "20", "all", "--seed", "2")
    )
    assert [line["learned"] for line in summaries] == [0, 20, curves[2]["learned"]]
    by = {(line["seed"], line["learned"]): line for line in curves}
    for summary in summaries:
        n = summary["learned"]
        apgr = [float(by[s, n]["apgr"]) for s in (1, 2, 4)]  # type: ignore[arg-type]
        assert summary["summary"] == "seeds" and summary["seeds"] == [1, 2, 4]
        assert summary["apgr_mean"] == pytest.approx(sum(apgr) / 3, abs=1e-4)
        assert summary["apgr_se"] == pytest.approx(statistics.stdev(apgr) / math.sqrt(3), abs=1e-4)
        assert (summary["apgr_min"], summary["apgr_max"]) == (min(apgr), max(apgr))
        if n:  # paired with the same seed's N = 0
            start = [float(by[s, 0]["apgr"]) for s in (1, 2, 4)]  # type: ignore[arg-type]
            diff = [a - b for a, b in zip(apgr, start, strict=True)]
            assert summary["minus_learned_0_mean"] == pytest.approx(sum(diff) / 3, abs=1e-4)
        else:
            assert "minus_learned_0_mean" not in summary
    last = summaries[-1]  # "all": against the router trained on the learned half alone
    alone = [float(by[s, last["learned"]]["in_domain_only_apgr"]) for s in (1, 2, 4)]  # type: ignore[arg-type]
    assert last["in_domain_only_apgr_mean"] == pytest.approx(sum(alone) / 3, abs=1e-4)
    assert last["minus_in_domain_only_mean"] == pytest.approx(last["apgr_mean"] - sum(alone) / 3, abs=2e-4)
    assert "in_domain_only_apgr_mean" not in summaries[0]


def test_in_domain_evaluation_over_several_seeds_and_a_plot_wants_one() -> None:
    files = [str(MMLU_DIR / n) for n in ("mmlu_marketing.csv", "mmlu_virology.csv")]
    lines = _evaluate("--data", *files, "--seed", "0", "5")
    assert [line.get("seed") for line in lines[:2]] == [0, 5]
    assert lines[0]["apgr"] != lines[1]["apgr"]  # two splits
    assert lines[2]["summary"] == "seeds" and lines[2]["seeds"] == [0, 5]
    assert lines[2]["apgr_mean"] == pytest.approx((float(lines[0]["apgr"]) + float(lines[1]["apgr"])) / 2, abs=1e-4)  # type: ignore[arg-type]
    refused = _run_evaluate("--data", *files, "--seed", "0", "5", "--plot", "x.png", check=False)
    assert refused.returncode != 0 and "--plot draws one split" in refused.stderr


def test_a_seed_named_twice_is_refused_and_seeds_without_a_split_say_so() -> None:
    train, test = MMLU_DIR / "mmlu_marketing.csv", MMLU_DIR / "mmlu_virology.csv"
    twice = _run_evaluate("--train", str(train), "--test", str(test), "--learn", "0", "--seed", "1", "1", check=False)
    assert twice.returncode != 0 and "name each value once" in twice.stderr and not twice.stdout
    whole = _run_evaluate("--train", str(train), "--test", str(test), "--seed", "1", "2")
    assert "no split to seed" in whole.stderr
    assert len(whole.stdout.splitlines()) == 1  # one score of every row, not one per seed


def test_two_noise_levels_give_the_noise_loss_paired_by_seed() -> None:
    train, test = MMLU_DIR / "mmlu_marketing.csv", MMLU_DIR / "mmlu_virology.csv"
    args = ("--train", str(train), "--test", str(test), "--learn", "0", "40", "--seed", "1", "2")
    lines = _evaluate(*args, "--judge-noise", "0", "0.2")
    curves, summaries = lines[:8], lines[8:]
    assert [(line["judge_noise"], line["seed"], line["learned"]) for line in curves] == [
        (noise, s, n) for noise in (0.0, 0.2) for s in (1, 2) for n in (0, 40)
    ]
    assert [(line["judge_noise"], line["learned"]) for line in summaries] == [(0.0, 0), (0.0, 40), (0.2, 0), (0.2, 40)]
    by = {(line["judge_noise"], line["seed"], line["learned"]): float(line["apgr"]) for line in curves}  # type: ignore[arg-type]
    noisy_40 = summaries[3]
    loss = [by[0.0, s, 40] - by[0.2, s, 40] for s in (1, 2)]
    assert noisy_40["judge_noise_loss_mean"] == pytest.approx(sum(loss) / 2, abs=1e-4)
    assert summaries[2]["judge_noise_loss_mean"] == 0.0  # nothing learned: no label to flip
    assert "judge_noise_loss_mean" not in summaries[1]  # the clean curve is the reference
    assert summaries[3]["minus_learned_0_mean"] == pytest.approx(
        sum(by[0.2, s, 40] - by[0.2, s, 0] for s in (1, 2)) / 2, abs=1e-4
    )


def test_a_noise_share_outside_0_to_1_is_a_clear_error() -> None:
    train, test = MMLU_DIR / "mmlu_marketing.csv", MMLU_DIR / "mmlu_virology.csv"
    for bad in (("1.5",), ("-0.1",), ("0.2", "0.2")):
        out = _run_evaluate(
            "--train", str(train), "--test", str(test), "--learn", "10", "--judge-noise", *bad, check=False
        )
        assert out.returncode != 0 and "--judge-noise" in out.stderr and "Traceback" not in out.stderr
