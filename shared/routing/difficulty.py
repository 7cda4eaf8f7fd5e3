"""Prompt-difficulty prior: each tier's expected outcome from cheap features of the prompt text.

The kNN estimate (predictor.py) knows a prompt only through its labelled neighbours; where there
are none (a greeting, a domain the examples do not cover) it used to fall back to one constant
prior per model, which always favours the strongest model. This module gives a per-prompt prior
instead: a ridge regression per outcome key over a dozen generic text features (length, lines,
digits, symbols, code and math markers, question structure), learned from the labelled examples
with every source weighted equally. Nothing in it names a benchmark or a prompt; the weights are
fitted (`fit`), shipped as JSON beside the starter examples (`shared/data/difficulty.json`,
written by scripts/build_starter_examples.py) and evaluated in docs/routing-quality.md.

Request time: one pass of a few regular expressions over the first 4,000 characters and a dot
product per key (~0.02 ms). numpy only.
"""

from __future__ import annotations

import functools
import json
import math
import operator
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "data" / "difficulty.json"
_HEAD = 4000
CLIP_SD = 3.0
TIER_ORDER = ("tier:economy", "tier:balanced", "tier:frontier")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
_MATH = re.compile(r"[=+*/^<>\\$]|\\frac|\\sqrt")
_CODE = re.compile(r"```|\b(?:def|return|import|class|function|print|for|while|int|var|const)\b|[{};]|==|\(\)")
_OPTION_LINE = re.compile(r"(?m)^\s*\(?[A-Ha-h][\).:]\s")

FEATURES = (
    "bias",
    "log_chars",
    "log_lines",
    "digit_share",
    "symbol_share",
    "math_density",
    "code_density",
    "log_numbers",
    "log_questions",
    "ends_with_question",
    "option_lines",
)


def _feature_row(text: str) -> tuple[float, ...]:
    head = text[:_HEAD]
    n = max(len(head), 1)
    # map() over the str methods: no Python frame per character (a 4,000-character prompt)
    digits = sum(map(str.isdigit, head))
    symbols = len(head) - sum(map(str.isalnum, head)) - sum(map(str.isspace, head))
    stripped = head.rstrip()
    return (
        1.0,
        math.log1p(len(text)),
        math.log1p(text.count("\n")),
        digits / n,
        symbols / n,
        10.0 * len(_MATH.findall(head)) / n,
        10.0 * len(_CODE.findall(head)) / n,
        math.log1p(len(_NUMBER.findall(head))),
        math.log1p(head.count("?")),
        1.0 if stripped.endswith("?") else 0.0,
        min(len(_OPTION_LINE.findall(head)), 8) / 4.0,
    )


# a decision reads one prompt's features twice (the shipped prior and a tenant's own): the last
# few are kept, and a str caches its own hash, so a hit costs a lookup
feature_values = functools.lru_cache(maxsize=4)(_feature_row)
feature_values.__doc__ = "The feature row of one prompt (see FEATURES), as plain floats."


def features(text: str) -> np.ndarray:
    """The feature row of one prompt (see FEATURES), for fitting: not cached, so that fitting on
    thousands of prompts does not push out what a decision reads."""
    return np.array(_feature_row(text))


def clipped_row(values: Sequence[float], mean: Sequence[float], scale: Sequence[float]) -> list[float]:
    """[1, the standardised features clipped to ±3 sd]: a prompt unlike every example used in
    fitting (a two-letter greeting) is not extrapolated to extremes. Plain floats: a dozen of
    them cost less than the numpy calls they would replace on every decision."""
    return [1.0] + [
        min(CLIP_SD, max(-CLIP_SD, (v - m) / sd)) for v, m, sd in zip(values[1:], mean[1:], scale[1:], strict=True)
    ]


def standardise(x: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The weighted mean and spread of each feature column; the bias column stays 1 and a
    constant column (prompts without text) is left unscaled, so it gets no weight."""
    mean = np.average(x, axis=0, weights=weights) if len(x) else np.zeros(x.shape[1])
    scale = np.sqrt(np.average((x - mean) ** 2, axis=0, weights=weights)) if len(x) else np.ones(x.shape[1])
    mean[0], scale[0] = 0.0, 1.0
    scale[scale < 1e-9] = 1.0
    return mean, scale


def ridge_solve(a: np.ndarray, y: np.ndarray, weights: np.ndarray, ridge: float) -> np.ndarray:
    """Weighted ridge regression on the columns of `a`, the first (the intercept) not shrunk."""
    penalty = ridge * weights.sum() / max(len(y), 1) * np.eye(a.shape[1])
    penalty[0, 0] = 0.0
    solved: np.ndarray = np.linalg.solve(a.T @ (a * weights[:, None]) + penalty, a.T @ (weights * y))
    return solved


@dataclass(frozen=True)
class DifficultyModel:
    """Per outcome key: a linear model of the expected outcome over `features`."""

    weights: Mapping[str, np.ndarray]
    mean: np.ndarray
    scale: np.ndarray
    _plain: tuple[list[float], list[float], dict[str, list[float]]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        plain = ([float(v) for v in self.mean], [float(v) for v in self.scale])
        object.__setattr__(self, "_plain", (*plain, {k: [float(v) for v in w] for k, w in self.weights.items()}))

    def predict(self, text: str) -> dict[str, float]:
        """Expected outcome per key (features clipped as `clipped_row`), the tiers kept in order
        (economy <= balanced <= frontier: in expectation a stronger tier is no worse), pooling
        adjacent values that cross."""
        # plain floats: a dozen products per key cost less than the numpy calls they replace, and
        # the interpreter's loop stays in cache between requests where numpy's paths do not
        mean, scale, weights = self._plain
        x = clipped_row(feature_values(text), mean, scale)
        out = {k: min(0.99, max(0.01, sum(map(operator.mul, x, w)))) for k, w in weights.items()}
        return _ordered_tiers(out)

    @classmethod
    def fit(
        cls,
        texts: Sequence[str],
        outcomes: Sequence[Mapping[str, float]],
        *,
        sample_weight: Sequence[float] | None = None,
        ridge: float = 1.0,
    ) -> DifficultyModel:
        """Weighted ridge regression per key, on the rows that carry that key."""
        x = np.stack([features(t) for t in texts]) if texts else np.zeros((0, len(FEATURES)))
        w = np.ones(len(texts)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        mean, scale = standardise(x, w)
        z = (x - mean) / scale
        weights: dict[str, np.ndarray] = {}
        for key in sorted({k for row in outcomes for k in row}):
            rows = [i for i, row in enumerate(outcomes) if key in row]
            y = np.array([outcomes[i][key] for i in rows])
            weights[key] = ridge_solve(z[rows], y, w[rows], ridge)
        return cls(weights=weights, mean=mean, scale=scale)

    def save(self, path: Path) -> None:
        body = {
            "features": list(FEATURES),
            "mean": [round(float(v), 6) for v in self.mean],
            "scale": [round(float(v), 6) for v in self.scale],
            "weights": {k: [round(float(v), 6) for v in w] for k, w in self.weights.items()},
        }
        Path(path).write_text(json.dumps(body, indent=1) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> DifficultyModel:
        body = json.loads(Path(path).read_text(encoding="utf-8"))
        if list(body["features"]) != list(FEATURES):
            raise ValueError(f"{path}: fitted on other features; refit it (scripts/build_starter_examples.py)")
        return cls(
            weights={k: np.asarray(v, dtype=np.float64) for k, v in body["weights"].items()},
            mean=np.asarray(body["mean"], dtype=np.float64),
            scale=np.asarray(body["scale"], dtype=np.float64),
        )


def _ordered_tiers(values: dict[str, float]) -> dict[str, float]:
    present = [t for t in TIER_ORDER if t in values]
    blocks: list[list[float]] = []  # pool-adjacent-violators over economy -> frontier
    for t in present:
        blocks.append([values[t], 1.0])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            total, count = blocks.pop()
            blocks[-1][0] += total
            blocks[-1][1] += count
    flat = [b[0] / b[1] for b in blocks for _ in range(int(b[1]))]
    return {**values, **dict(zip(present, flat, strict=True))}


def load_default() -> DifficultyModel | None:
    """The shipped model, or None when the file is missing (the router then uses constant priors)."""
    return DifficultyModel.load(DEFAULT_PATH) if DEFAULT_PATH.exists() else None
