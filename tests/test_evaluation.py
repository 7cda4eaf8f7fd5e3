"""The evaluation protocol of QUALITY.md: curve, metrics, calibration, and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from shared.evaluation import curve, metrics, split, threshold_for
from tests.conftest import MMLU_DIR, ROOT


def outcomes(n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    strong = (rng.random(n) < 0.8).astype(float)
    weak = np.where(strong == 1, (rng.random(n) < 0.8).astype(float), (rng.random(n) < 0.2).astype(float))
    return strong, weak


def test_curve_ends_at_the_single_model_accuracies() -> None:
    strong, weak = outcomes(1000)
    shares, acc = curve(np.zeros(1000), strong, weak)
    assert len(shares) == 101
    assert acc[0] == pytest.approx(weak.mean())
    assert acc[-1] == pytest.approx(strong.mean())


def test_oracle_beats_random_beats_reversed() -> None:
    strong, weak = outcomes(4000)
    oracle = strong - weak
    random_scores = np.random.default_rng(7).random(4000)
    m_oracle, m_random, m_bad = (
        metrics(oracle, strong, weak),
        metrics(random_scores, strong, weak),
        metrics(-oracle, strong, weak),
    )
    assert m_oracle["apgr"] > 1.0  # sending only the prompts the strong model fixes beats "all strong"
    assert 0.45 < m_random["apgr"] < 0.55
    assert m_bad["apgr"] < m_random["apgr"]
    assert m_oracle["cpt50"] < m_random["cpt50"]
    assert m_oracle["strong_calls_at_95"] <= m_random["strong_calls_at_95"]


def test_split_is_fixed_by_seed() -> None:
    a_train, a_test = split(100, 0.5, 0)
    b_train, _ = split(100, 0.5, 0)
    c_train, _ = split(100, 0.5, 1)
    assert len(a_train) == 50 and len(a_test) == 50
    assert set(a_train).isdisjoint(a_test)
    assert list(a_train) == list(b_train) and list(a_train) != list(c_train)


def test_threshold_meets_a_strong_share_and_a_quality_target() -> None:
    strong, weak = outcomes(2000)
    scores = (strong - weak) + np.random.default_rng(3).normal(0, 0.5, 2000)
    t = threshold_for(scores, strong, weak, strong_share=0.3, quality=None)
    assert t["strong_share"] == pytest.approx(0.3, abs=0.002)
    q = threshold_for(scores, strong, weak, strong_share=None, quality=0.95)
    assert q["accuracy"] >= 0.95 * strong.mean() - 1e-9


def test_cli_evaluate_and_calibrate_on_real_data(tmp_path: Path) -> None:
    files = [str(MMLU_DIR / n) for n in ("mmlu_marketing.csv", "mmlu_high_school_mathematics.csv", "mmlu_virology.csv")]
    args = ["--data", *files, "--strong", "gpt-4-1106-preview", "--weak", "mistralai/Mixtral-8x7B-Instruct-v0.1"]
    plot = tmp_path / "curve.png"
    out = subprocess.run(
        [sys.executable, "-m", "shared.cli", "evaluate", *args, "--json", "--plot", str(plot)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    result = json.loads(out.stdout)
    for key in (
        "apgr",
        "cpt50",
        "cpt80",
        "strong_calls_at_95",
        "weak_acc",
        "strong_acc",
        "n_train",
        "n_test",
        "decision_ms_p50",
    ):
        assert key in result
    assert result["n_train"] + result["n_test"] == 234 + 270 + 166
    assert 0.0 <= result["weak_acc"] <= 1.0 and 0.0 <= result["strong_acc"] <= 1.0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    cal = subprocess.run(
        [sys.executable, "-m", "shared.cli", "calibrate", *args, "--target-strong-share", "0.4"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    c = json.loads(cal.stdout)
    assert c["setting"].startswith("COST_QUALITY_MARGIN=")
    assert abs(c["strong_share"] - 0.4) < 0.02
