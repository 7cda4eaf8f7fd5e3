"""The typicality floors (shared/routing/typicality.py): the neighbour-mass floor and the
known-n-gram floor are quantiles of the examples' own figures, saved and loaded with the encoder
state they were measured with; a file written before the second floor existed applies the first
only. The router's use of them on the shipped state is in tests/test_routing_table.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from shared.examples.labelled import Neighbour
from shared.routing.typicality import TypicalityFloor, load_default


def _search(vectors: np.ndarray) -> Callable[[np.ndarray, int], list[Neighbour]]:
    def search(vector: np.ndarray, k: int) -> list[Neighbour]:
        sims = vectors @ vector
        top = np.argsort(-sims, kind="stable")[:k]
        return [Neighbour(id=str(i), similarity=float(sims[i]), outcomes={"m": 1.0}) for i in top]

    return search


def test_the_known_ngram_floor_is_the_examples_own_quantile_and_survives_a_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((400, 8))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    supports = list(range(400))  # 0..399: the 10% quantile is 39.9
    floor = TypicalityFloor.calibrate(
        vectors, _search(vectors), encoder="e", k=10, power=2.0, rate=0.1, sample=400, supports=supports
    )
    assert floor.min_support == 39
    assert floor.too_little_text(38) and not floor.too_little_text(39)
    path = tmp_path / "typicality.json"
    floor.save(path)
    loaded = TypicalityFloor.load(path)
    assert loaded.min_support == 39 and loaded.encoder == "e" and abs(loaded.floor - floor.floor) < 1e-4
    # without the examples' counts there is no second floor, and nothing is too short
    plain = TypicalityFloor.calibrate(vectors, _search(vectors), encoder="e", k=10, power=2.0, rate=0.1, sample=400)
    assert plain.min_support == 0 and not plain.too_little_text(0) and plain.floor == floor.floor


def test_a_floor_saved_before_the_known_ngram_floor_applies_the_mass_floor_only(tmp_path: Path) -> None:
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"floor": 30.0, "encoder": "e", "k": 200, "power": 2.0, "rate": 0.001, "sample": 5000}))
    old = TypicalityFloor.load(path)
    assert old.min_support == 0 and not old.too_little_text(0) and old.unlike_the_examples(29.9)


def test_the_shipped_floors_were_measured_together() -> None:
    shipped = load_default()
    assert shipped is not None and shipped.floor > 0 and shipped.min_support >= 1 and shipped.rate == 0.001
