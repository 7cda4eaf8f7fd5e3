"""Why everyday prompts do not reach the economy tier, and what was tried (issue #13, item 3).

Replays the router's decision on tests/data/everyday_and_hard_prompts.csv (shipped catalog,
starter examples, encoder state, difficulty prior and typicality floor; `auto` = balanced) and on
variants of the estimate that were evaluated and not shipped (docs/routing-quality.md,
"Confidence and everyday prompts"):

- form-weighted neighbours: each neighbour's weight sim^2 times a Gaussian kernel of the distance
  between its difficulty features and the prompt's (standardised, clipped), width h;
- a kernel (non-linear) per-prompt prior: the source-weighted mean outcome of the examples whose
  difficulty features are near the prompt's, width h, instead of the linear difficulty model;
- a local typicality ratio (as the local outlier factor): the prompt's neighbour mass over the mean
  of its neighbours' own leave-one-out masses, against the examples' own ratios.

    python scripts/everyday_prompt_diagnostics.py ../shared/data   # about a minute
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from collections.abc import Callable
from pathlib import Path
from statistics import NormalDist

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from build_starter_examples import SOURCES, _score, tier_rows  # noqa: E402

from shared.catalog import Catalog  # noqa: E402
from shared.composition.assemble import build_encoder, load_starter  # noqa: E402
from shared.config import Settings  # noqa: E402
from shared.examples.labelled import Neighbours  # noqa: E402
from shared.routing.difficulty import features, load_default  # noqa: E402
from shared.routing.predictor import PredictorParams, gain_stderrs  # noqa: E402
from shared.routing.router import DEFAULT_EXPECTED_OUTPUT_TOKENS, MIN_CONFIDENCE  # noqa: E402
from shared.routing.typicality import load_default as load_floor  # noqa: E402

TABLE = ROOT / "tests" / "data" / "everyday_and_hard_prompts.csv"
KEYS = ("tier:economy", "tier:balanced", "tier:frontier")
K, STRENGTH, POWER = 200, 20.0, 2.0
Prior = Callable[[str, np.ndarray], np.ndarray]


class Starter:
    """The shipped examples as arrays: vectors, outcomes (economy, balanced, frontier), standardised features."""

    def __init__(self, settings: Settings) -> None:
        self.encoder = build_encoder(settings)
        examples = load_starter(settings)
        self.vectors = self.encoder.encode([ex.content for ex in examples])
        self.y = np.array([[ex.outcomes.get(k, np.nan) for k in KEYS] for ex in examples])
        self.difficulty = load_default()
        assert self.difficulty is not None
        self.z = np.stack([self.form(ex.content) for ex in examples])

    def form(self, text: str) -> np.ndarray:
        d = self.difficulty
        assert d is not None
        return np.clip((features(text) - d.mean) / d.scale, -3.0, 3.0)[1:]

    def linear_prior(self, text: str, _z: np.ndarray) -> np.ndarray:
        assert self.difficulty is not None
        p = self.difficulty.predict(text)
        return np.array([p[k] for k in KEYS])


def kernel_prior(root: Path, starter: Starter, h: float) -> Prior:
    """Source-weighted Nadaraya-Watson over the difficulty features of every source's rows."""
    z, y, w = [], [], []
    for spec in SOURCES.values():
        rows = list(tier_rows(root, spec))
        for row in rows:
            z.append(starter.form(row[0]))
            y.append([_score(v) if v else np.nan for v in (row[3], row[2], row[1])])
            w.append(1.0 / len(rows))
    za, ya, wa = np.array(z), np.array(y), np.array(w)
    present = ~np.isnan(ya)

    def prior(_text: str, zq: np.ndarray) -> np.ndarray:
        d2 = ((za - zq) ** 2).sum(axis=1)
        kern = wa * np.exp(-(d2 - d2.min()) / (2 * h * h))
        return np.asarray((kern @ np.where(present, ya, 0.0)) / (kern @ present))

    return prior


def penalties(settings: Settings) -> np.ndarray:
    """Per tier, the balanced policy's cost term of its cheapest enabled model (no prompt tokens)."""
    cost = {}
    for m in Catalog.load(settings.model_catalog_path).enabled():
        c = m.cost_usd(0, min(DEFAULT_EXPECTED_OUTPUT_TOKENS, m.max_output_tokens))
        cost[m.tier] = min(c, cost.get(m.tier, math.inf))
    cheapest = min(cost.values())
    return np.array([settings.balanced_cost_weight * math.log10(cost[k.split(":")[1]] / cheapest) for k in KEYS])


def decide(
    s: Starter, prompt: str, prior: Prior, pen: np.ndarray, floor: float, h: float | None, z: float = 0.0
) -> int:
    """0 economy, 1 balanced, 2 frontier, as Router.decide under `balanced` would choose; `z`:
    the upgrade discount in standard errors of each tier's gain over economy (policy.rank)."""
    zq = s.form(prompt)
    sims = s.vectors @ s.encoder.encode([prompt])[0]
    top = np.argpartition(-sims, K)[:K]
    w = np.clip(sims[top], 0.0, None) ** POWER
    mass = float(w.sum())
    if mass < floor or mass / (mass + STRENGTH) < MIN_CONFIDENCE:
        return 0  # low confidence: the cheapest eligible model
    if h is not None:
        w = w * np.exp(-((s.z[top] - zq) ** 2).sum(axis=1) / (2 * h * h))
    present = ~np.isnan(s.y[top])
    est = (w @ np.where(present, s.y[top], 0.0) + STRENGTH * prior(prompt, zq)) / (w @ present + STRENGTH)
    if z > 0.0:  # the spread of the plain (not form-weighted) neighbours, as the router measures it
        nbs = Neighbours([str(i) for i in top], sims[top], np.ones(K), KEYS, s.y[top])
        se = gain_stderrs(nbs, KEYS[0], PredictorParams(k=K, prior_strength=STRENGTH, similarity_power=POWER))
        est = est - z * np.array([se.get(k, 0.0) for k in KEYS])
    return int(np.argmax(est - pen))


def local_ratio_flags(s: Starter, prompts: list[str]) -> list[bool]:
    """Local typicality: mass / mean of the neighbours' own leave-one-out masses, below the examples'
    own 0.1% quantile of that ratio."""
    v = s.vectors.astype(np.float32)
    own, hood = np.empty(len(v)), np.empty((len(v), K), dtype=np.int64)
    for start in range(0, len(v), 1000):
        sims = v[start : start + 1000] @ v.T
        sims[np.arange(len(sims)), np.arange(start, start + len(sims))] = -9.0
        top = np.argpartition(-sims, K, axis=1)[:, :K]
        hood[start : start + len(sims)] = top
        own[start : start + len(sims)] = (np.clip(np.take_along_axis(sims, top, 1), 0, None) ** POWER).sum(axis=1)
    floor = np.quantile(own / own[hood].mean(axis=1), 0.001)
    flags = []
    for p in prompts:
        sims = s.vectors @ s.encoder.encode([p])[0]
        top = np.argpartition(-sims, K)[:K]
        flags.append(float((np.clip(sims[top], 0, None) ** POWER).sum() / own[top].mean()) < floor)
    return flags


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root", nargs="?", default="../shared/data", help="the labelled data folder")
    root = Path(p.parse_args().root)
    settings = Settings()
    s = Starter(settings)
    floor = load_floor()
    assert floor is not None
    pen = penalties(settings)
    with TABLE.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    prompts, everyday = [r["prompt"] for r in rows], [r["expected"] == "economy" for r in rows]

    shipped_z = NormalDist().inv_cdf(settings.balanced_upgrade_confidence)

    def report(name: str, prior: Prior, h: float | None, z: float = 0.0) -> None:
        tiers = [decide(s, q, prior, pen, floor.floor, h, z) for q in prompts]
        cheap = sum(t == 0 for t, e in zip(tiers, everyday, strict=True) if e)
        up = sum(t > 0 for t, e in zip(tiers, everyday, strict=True) if not e)
        print(
            f"{name:44} everyday to economy {cheap:2}/{sum(everyday)}  hard up {up:2}/{len(everyday) - sum(everyday)}"
        )

    report(f"shipped (upgrade confidence {settings.balanced_upgrade_confidence})", s.linear_prior, None, shipped_z)
    report("before it (upgrade on the point estimate)", s.linear_prior, None)
    for h in (0.5, 1.0, 2.0, 3.0):
        report(f"form-weighted neighbours h={h}", s.linear_prior, h)
    for h in (0.25, 0.5, 1.0):
        kp = kernel_prior(root, s, h)
        report(f"kernel prior h={h}", kp, None)
        report(f"kernel prior h={h} + form-weighted h=2", kp, 2.0)
    flags = local_ratio_flags(s, prompts)
    for name, want in (("everyday", True), ("hard", False)):
        hit = sum(f for f, e in zip(flags, everyday, strict=True) if e == want)
        print(f"local typicality ratio below the examples' 0.1% quantile: {name} {hit}")


if __name__ == "__main__":
    main()
