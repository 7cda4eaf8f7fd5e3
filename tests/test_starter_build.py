"""scripts/build_starter_examples.py: how a source's models become tier outcomes, and the
answer-format-failure rule (`--drop-format-failures`) measured in docs/routing-quality.md."""

from __future__ import annotations

import csv
import gzip
import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
MODELS = ["strong-a", "strong-b", "weak-a", "weak-b", "other"]
MAPPING = {"tier:frontier": ["strong-a", "strong-b"], "tier:economy": ["weak-a", "weak-b"]}


def _build() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "build_starter_examples", ROOT / "scripts" / "build_starter_examples.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _source(tmp_path: Path) -> Path:
    """Two tasks of 10 prompts. On `code`, weak-b answers 1 in 10 and the unmapped `other` none,
    where the median model answers 6 in 10 (format failures); on `qa` every model is within a
    factor of two of the median."""
    path = tmp_path / "source.csv.gz"
    with gzip.open(path, "wt", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["prompt", *MODELS, "meta_task", "meta_split"])
        for i in range(10):
            writer.writerow([f"code {i}", 1, int(i < 8), int(i < 6), int(i < 1), 0, "code", "train"])
            writer.writerow([f"qa {i}", 1, int(i < 7), int(i < 5), int(i < 4), int(i < 5), "qa", "train"])
    return path


def _outcomes(build: ModuleType, rows: list[list[str]], task: str) -> tuple[float, float]:
    """The task's mean frontier and economy outcome, as written to the starter file."""
    picked = [r for r in rows if r[0].startswith(task)]
    frontier, economy = (sum(build._score(r[i]) for r in picked) / len(picked) for i in (1, 3))
    return round(frontier, 6), round(economy, 6)


def test_format_failures_are_the_cells_far_below_the_median_model(tmp_path: Path) -> None:
    build = _build()
    with gzip.open(_source(tmp_path), "rt", encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    # `other` fails too, but it is not mapped onto a tier: it counts towards the median only
    assert build.format_failures(rows, ["strong-a", "strong-b", "weak-a", "weak-b"]) == {("code", "weak-b")}


def test_the_default_build_keeps_every_mapped_model_and_the_flag_drops_failures(tmp_path: Path) -> None:
    build = _build()
    _source(tmp_path)
    spec = ("source.csv.gz", MAPPING, {})
    kept = list(build.tier_rows(tmp_path, spec))
    dropped = list(build.tier_rows(tmp_path, spec, drop_failures=True))
    assert len(kept) == len(dropped) == 20
    # economy on `code`: mean of weak-a and weak-b (0.35) by default, weak-a alone (0.6) with the flag
    assert _outcomes(build, kept, "code") == (0.9, 0.35)
    assert _outcomes(build, dropped, "code") == (0.9, 0.6)
    # no failure on `qa`: the flag changes nothing there
    assert _outcomes(build, kept, "qa") == _outcomes(build, dropped, "qa") == (0.85, 0.45)
