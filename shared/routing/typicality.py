"""Is this prompt like anything in the labelled examples? A data-calibrated floor on neighbour evidence.

The predictor's confidence (similarity mass of the neighbours against the prior strength) cannot
tell real neighbours from accidental ones: a greeting finds benchmark questions at cosine 0.4-0.6
in the encoder's space and looks half-confident. What does tell them apart is how the mass compares
with the mass the examples themselves see: each example's own k nearest *other* examples
(leave-one-out) give the distribution of "a neighbourhood of a prompt the examples know". A prompt
whose neighbourhood is thinner than all but `FALSE_ALARM_RATE` of the examples' own is one the
examples hold nothing like, whatever its best cosine; the router then takes its safe action.

A second floor reads the prompt itself: how many of its n-grams the encoder's basis knows
(`min_support`). A greeting rests on one or two ("hello", "hey"), and its neighbours are the
examples in which that word is prominent, whatever they ask ("hello" finds code tasks that print
it), which can be as dense as any. The floor is the same quantile of the examples' own counts:
fewer than all but `FALSE_ALARM_RATE` of them, and the prompt is one the examples hold nothing
like.

The floors are measured, not chosen: `calibrate` computes the quantile over the shipped examples with
the shipped encoder (scripts/build_starter_examples.py --calibrate writes
shared/data/typicality.json), and it is used only with the encoder state it was measured with.
docs/routing-quality.md ("Confidence") shows what it separates and what it cannot.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..examples.labelled import Neighbour, Neighbours

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "data" / "typicality.json"
# The share of the examples' own neighbourhoods that the floor flags: one in a thousand prompts
# like the examples would be called unknown. At 1% the floor also flags proofs the starter set
# has nothing like (docs/routing-quality.md), so the operating point is kept this low.
FALSE_ALARM_RATE = 0.001


def neighbour_mass(neighbours: Sequence[Neighbour], power: float) -> float:
    """Similarity mass of a neighbour set, as the predictor weighs it (sim^power, weights)."""
    nbs = Neighbours.of(neighbours)
    if not len(nbs):
        return 0.0
    return float(np.add.reduce(nbs.mass_weights(power)))


@dataclass(frozen=True)
class TypicalityFloor:
    """The neighbour mass below which a prompt is unlike the examples (for one encoder state, k, power)."""

    floor: float
    encoder: str
    k: int
    power: float
    rate: float
    sample: int
    # the examples' own count of basis n-grams at `rate` (0: not measured, not applied)
    min_support: int = 0

    def unlike_the_examples(self, mass: float) -> bool:
        return mass < self.floor

    def too_little_text(self, support: int) -> bool:
        return support < self.min_support

    def applies_to(self, encoder: str, k: int, power: float) -> bool:
        return self.encoder == encoder and self.k == k and self.power == power

    @classmethod
    def calibrate(
        cls,
        vectors: np.ndarray,
        search: Callable[[np.ndarray, int], Sequence[Neighbour]],
        *,
        encoder: str,
        k: int,
        power: float,
        rate: float = FALSE_ALARM_RATE,
        sample: int = 5000,
        seed: int = 0,
        supports: Sequence[int] | None = None,
    ) -> TypicalityFloor:
        """Leave-one-out: each sampled example's k nearest other examples, their mass's `rate`
        quantile; and the same quantile of the sampled examples' `supports` (each example's
        count of basis n-grams, `TfidfSvdEncoder.support`) when given."""
        rows = np.random.default_rng(seed).permutation(len(vectors))[:sample]
        masses = [neighbour_mass(Neighbours.of(search(vectors[i], k + 1))[1:], power) for i in rows]
        floor = float(np.quantile(masses, rate)) if masses else 0.0
        counts = [supports[i] for i in rows] if supports is not None else []
        min_support = int(np.floor(np.quantile(counts, rate))) if counts else 0
        return cls(
            floor=floor, encoder=encoder, k=k, power=power, rate=rate, sample=len(masses), min_support=min_support
        )

    def save(self, path: Path) -> None:
        body = {
            "floor": round(self.floor, 4),
            "encoder": self.encoder,
            "k": self.k,
            "power": self.power,
            "rate": self.rate,
            "sample": self.sample,
            "min_support": self.min_support,
        }
        Path(path).write_text(json.dumps(body, indent=1) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> TypicalityFloor:
        body = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(
            floor=float(body["floor"]),
            encoder=str(body["encoder"]),
            k=int(body["k"]),
            power=float(body["power"]),
            rate=float(body["rate"]),
            sample=int(body["sample"]),
            min_support=int(body.get("min_support", 0)),
        )


def load_default() -> TypicalityFloor | None:
    """The shipped floor, or None when the file is missing."""
    return TypicalityFloor.load(DEFAULT_PATH) if DEFAULT_PATH.exists() else None
