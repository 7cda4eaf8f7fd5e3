"""Labelled routing examples: a prompt and how well each model (or tier) did on it."""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO, overload

import numpy as np

# Fixed namespaces so that the same example always gets the same id, in every index. A tenant's
# examples have a namespace of their own, keyed by the tenant: no text a client sends can give an
# id that names a shared example or another tenant's.
EXAMPLE_NAMESPACE = uuid.UUID("6f1c6a52-4a8e-4d0f-9d43-0b7f6f3e2a11")
TENANT_EXAMPLE_NAMESPACE = uuid.UUID("b3e0f7d4-2c6a-4f51-8e9b-71d2a4c05f38")

TRUE_STRINGS = {"true", "1", "yes", "y", "t"}
FALSE_STRINGS = {"false", "0", "no", "n", "f"}
# what spreadsheets and pandas write for a missing value (pandas reads these as NaN by default):
# a missing outcome, as an empty cell is, not a score
MISSING_STRINGS = {"", "nan", "-nan", "na", "n/a", "#n/a", "null", "none"}


class LabelledFileError(ValueError):
    """A labelled file that cannot be read as one: a missing column, an unreadable or out-of-range
    outcome (the message names the line and column). The CLI reports it without a traceback."""


class NoPromptColumn(LabelledFileError):
    """The file has no column of the prompt's name (the CLI says how to name another)."""


def example_id(source: str, content: str, tenant: str | None = None) -> str:
    """Shared examples (tenant None) keep the ids they always had; a tenant's are keyed by the
    tenant too, as JSON, so no choice of tenant, source and content can spell another's."""
    if tenant is None:
        return str(uuid.uuid5(EXAMPLE_NAMESPACE, f"{source}\n{content}"))
    return str(uuid.uuid5(TENANT_EXAMPLE_NAMESPACE, json.dumps([tenant, source, content])))


@dataclass(frozen=True)
class LabelledExample:
    content: str
    outcomes: dict[str, float]
    label_source: str = "benchmark"
    source: str = "starter"
    category: str | None = None
    task_type: str | None = None
    language: str | None = None
    tenant: str | None = None
    weight: float = 1.0
    source_request_id: str | None = None
    id: str = field(default="")

    def __post_init__(self) -> None:
        if not self.id:
            object.__setattr__(self, "id", example_id(self.source, self.content, self.tenant))
        for key, val in self.outcomes.items():
            if not 0.0 <= val <= 1.0:
                raise ValueError(f"outcome for {key} must be within 0..1, got {val}")

    @property
    def best_model(self) -> str | None:
        if not self.outcomes:
            return None
        return max(self.outcomes.items(), key=lambda kv: kv[1])[0]


@dataclass(frozen=True)
class Neighbour:
    id: str
    similarity: float
    outcomes: dict[str, float]
    weight: float = 1.0


class Neighbours(Sequence[Neighbour]):
    """k neighbours as arrays (what the predictor computes on), and as a sequence of Neighbour.

    `outcomes[i, j]` is neighbour i's outcome for `keys[j]`, NaN where it has none. Indexes that
    hold their examples as arrays (LocalIndex) build this without creating k objects, from the
    rows of an evidence matrix (`from_evidence`): per key, 1.0 where an outcome is present, then
    per key the outcome with 0.0 where absent, which is what the predictor multiplies; the NaN
    form is derived only when something asks for it.
    """

    def __init__(
        self,
        ids: Sequence[str] | np.ndarray,
        similarities: np.ndarray,
        weights: np.ndarray,
        keys: Sequence[str],
        outcomes: np.ndarray | None,
        *,
        evidence: np.ndarray | None = None,
        positions: np.ndarray | None = None,
    ) -> None:
        # the ids, a list or an object array; with `positions`, the array they are taken from
        # when first asked for (LocalIndex hands over its id array: a chat decision never reads them)
        self._ids: Sequence[str] | np.ndarray | None = ids if positions is None else None
        self._id_source, self._positions = ids, positions
        self.similarities = np.asarray(similarities, dtype=np.float64)
        self.weights = np.asarray(weights, dtype=np.float64)
        self.keys = tuple(keys)
        self.key_index = {k: j for j, k in enumerate(self.keys)}
        self._outcomes = (
            None
            if outcomes is None
            else np.asarray(outcomes, dtype=np.float64).reshape(len(self.similarities), len(self.keys))
        )
        self._evidence = evidence
        # per-key evidence and similarity weights, computed once per neighbour set (predictor.py)
        self.cache: dict[object, object] = {}

    @classmethod
    def from_evidence(
        cls,
        ids: Sequence[str] | np.ndarray,
        similarities: np.ndarray,
        weights: np.ndarray,
        keys: Sequence[str],
        evidence: np.ndarray,
        *,
        positions: np.ndarray | None = None,
    ) -> Neighbours:
        return cls(ids, similarities, weights, keys, None, evidence=evidence, positions=positions)

    @property
    def ids(self) -> Sequence[str] | np.ndarray:
        if self._ids is None:
            self._ids = np.asarray(self._id_source)[self._positions]
        return self._ids

    def ids_at(self, rows: Sequence[int] | np.ndarray) -> list[str]:
        """The ids of these rows only."""
        if self._ids is not None or self._positions is None:
            ids = self.ids
            return [str(ids[i]) for i in rows]
        return [str(i) for i in np.asarray(self._id_source)[self._positions[rows]].tolist()]

    @property
    def outcomes(self) -> np.ndarray:
        if self._outcomes is None:
            assert self._evidence is not None
            n = len(self.keys)
            present = self._evidence[:, :n] > 0
            self._outcomes = np.where(present, self._evidence[:, n:], np.nan).reshape(len(self.similarities), n)
        return self._outcomes

    @property
    def evidence(self) -> np.ndarray:
        """(k x 2·keys) float64: presence per key, then the outcome or 0.0 (evidence_matrix)."""
        if self._evidence is None:
            self._evidence = evidence_matrix(self.outcomes)
        return self._evidence

    def mass_weights(self, power: float) -> np.ndarray:
        """Each neighbour's weight in the estimate: max(similarity, 0) ** power times its weight."""
        key = ("mass_weights", power)
        cached = self.cache.get(key)
        if cached is None:
            # np.maximum, not np.clip: clip's Python dispatch costs more than the arithmetic
            cached = np.power(np.maximum(self.similarities, 0.0), power) * self.weights
            self.cache[key] = cached
        return cached  # type: ignore[return-value]

    @classmethod
    def of(cls, items: Sequence[Neighbour]) -> Neighbours:
        if isinstance(items, Neighbours):
            return items
        keys = sorted({k for n in items for k in n.outcomes})
        col = {k: j for j, k in enumerate(keys)}
        matrix = np.full((len(items), len(keys)), np.nan)
        for i, n in enumerate(items):
            for k, v in n.outcomes.items():
                matrix[i, col[k]] = v
        return cls(
            [n.id for n in items],
            np.fromiter((n.similarity for n in items), dtype=np.float64, count=len(items)),
            np.fromiter((n.weight for n in items), dtype=np.float64, count=len(items)),
            keys,
            matrix,
        )

    def __len__(self) -> int:
        return len(self.similarities)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    @overload
    def __getitem__(self, i: int) -> Neighbour: ...

    @overload
    def __getitem__(self, i: slice) -> list[Neighbour]: ...

    def __getitem__(self, i: int | slice) -> Neighbour | list[Neighbour]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        row = self.outcomes[i]
        outcomes = {k: float(row[j]) for k, j in self.key_index.items() if not np.isnan(row[j])}
        return Neighbour(self.ids[i], float(self.similarities[i]), outcomes, float(self.weights[i]))


def evidence_matrix(outcomes: np.ndarray) -> np.ndarray:
    """Outcomes (rows x keys, NaN where missing) as [presence per key | outcome or 0.0 per key],
    float64: a similarity-weighted sum of its rows gives every key's evidence mass and weighted
    outcome in one product."""
    present = ~np.isnan(outcomes)
    return np.hstack([present, np.where(present, outcomes, 0.0)]).astype(np.float64)


def parse_outcome(raw: str, score_range: tuple[float, float] | None = None) -> float | None:
    """A boolean or a score in 0..1; with `score_range` (lo, hi), a score on that scale (a
    judge's 1..10, say), mapped linearly onto 0..1."""
    value = raw.strip().lower()
    if value in MISSING_STRINGS:
        return None
    try:
        score = float(value)  # first: on a 1..10 scale "1" is the lowest score, not True
    except ValueError:
        if value in TRUE_STRINGS:
            return 1.0
        if value in FALSE_STRINGS:
            return 0.0
        raise ValueError(f"outcome {raw!r} is neither a boolean nor a number") from None
    lo, hi = score_range or (0.0, 1.0)
    if not lo <= score <= hi:
        raise ValueError(f"outcome {raw!r} is outside {lo:g}..{hi:g}")
    return (score - lo) / (hi - lo)


def open_labelled(path: Path) -> TextIO:
    """A labelled CSV (gzipped or not) as text. utf-8-sig: a spreadsheet's export starts with a
    byte-order mark, which would otherwise become part of the first column's name ("\ufeffprompt")."""
    if str(path).endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def prompt_column_in(path: Path, wanted: str) -> str:
    """`wanted` if the file has that column, else `prompt` if it has that one (the project's own
    files, such as training files in the starter format, beside a user's), else `wanted`, which
    reading the file then reports as missing with the columns it has."""
    with open_labelled(path) as fh:
        fields = csv.DictReader(fh).fieldnames or []
    return wanted if wanted in fields or "prompt" not in fields else "prompt"


def count_prompts(path: Path, *, prompt_column: str = "prompt") -> tuple[int, int]:
    """Rows of a labelled CSV, and those of them that hold a prompt, whatever their outcomes."""
    rows = prompts = 0
    with open_labelled(path) as fh:
        for row in csv.DictReader(fh):
            rows += 1
            prompts += bool(row.get(prompt_column))
    return rows, prompts


def outcome_scale(path: Path, columns: Iterable[str], *, prompt_column: str = "prompt") -> tuple[float, float] | None:
    """The lowest and highest numeric outcome in `columns` of a labelled CSV when any falls outside
    0..1 (scores on a scale of their own), else None; None too when the file lacks one of the
    columns, which reading it then reports."""
    lo, hi = math.inf, -math.inf
    with open_labelled(path) as fh:
        reader = csv.DictReader(fh)
        wanted = list(columns)
        if prompt_column not in (reader.fieldnames or []) or set(wanted) - set(reader.fieldnames or []):
            return None
        for row in reader:
            if not row.get(prompt_column):
                continue
            for col in wanted:
                try:
                    score = float(row[col] or "")
                except ValueError:
                    continue  # empty, a boolean, or unreadable (reading the file reports it, with its line)
                if math.isfinite(score):  # nan and inf are refused when the file is read
                    lo, hi = min(lo, score), max(hi, score)
    if lo >= 0.0 and hi <= 1.0:
        return None
    if lo == hi:
        raise LabelledFileError(f"{path}: every score is {lo:g}, outside 0..1, and there is no scale to map onto it")
    return lo, hi


def read_labelled_csv(
    path: Path,
    *,
    prompt_column: str = "prompt",
    model_columns: Iterable[str] | None = None,
    rename: dict[str, str] | None = None,
    source: str | None = None,
    label_source: str = "benchmark",
    score_range: tuple[float, float] | None = None,
) -> Iterator[LabelledExample]:
    """Rows of a CSV with a prompt column and one outcome column per model (bool or 0..1, or
    scores within `score_range`, mapped onto 0..1).

    `rename` maps a CSV column to the outcome key stored (e.g. a catalog model id or a tier
    key like 'tier:economy'). Columns not asked for are ignored; without `model_columns` every
    column but the prompt is an outcome column.
    """
    with open_labelled(path) as fh:
        yield from parse_labelled_rows(
            fh,
            prompt_column=prompt_column,
            model_columns=model_columns,
            rename=rename,
            source=source or Path(path).name,
            label_source=label_source,
            score_range=score_range,
        )


def parse_labelled_rows(
    fh: io.TextIOBase | Iterable[str],
    *,
    prompt_column: str = "prompt",
    model_columns: Iterable[str] | None = None,
    rename: dict[str, str] | None = None,
    source: str = "upload",
    label_source: str = "benchmark",
    score_range: tuple[float, float] | None = None,
) -> Iterator[LabelledExample]:
    reader = csv.DictReader(fh)  # type: ignore[arg-type]
    fields = reader.fieldnames or []
    if prompt_column not in fields:
        raise NoPromptColumn(f"no '{prompt_column}' column; the columns are {fields}")
    wanted = list(model_columns) if model_columns else [f for f in fields if f != prompt_column]
    missing = [c for c in wanted if c not in fields]
    if missing:
        raise LabelledFileError(f"outcome column(s) {missing} not found; the columns are {fields}")
    rename = rename or {}
    for line, row in enumerate(reader, start=2):
        text = row[prompt_column]
        if not text:
            continue
        outcomes: dict[str, float] = {}
        for col in wanted:
            try:
                score = parse_outcome(row[col] or "", score_range)
            except ValueError as exc:
                raise LabelledFileError(f"line {line}, column {col}: {exc}") from None
            if score is not None:
                outcomes[rename.get(col, col)] = score
        if outcomes:
            yield LabelledExample(content=text, outcomes=outcomes, source=source, label_source=label_source)


def write_labelled_csv(examples: Iterable[LabelledExample], fh: io.TextIOBase) -> int:
    rows = list(examples)
    keys = sorted({k for ex in rows for k in ex.outcomes})
    writer = csv.writer(fh)  # type: ignore[arg-type]
    writer.writerow(["prompt", *keys])
    for ex in rows:
        writer.writerow([ex.content, *(_fmt(ex.outcomes.get(k)) for k in keys)])
    return len(rows)


def _fmt(value: float | None) -> str:
    if value is None:
        return ""
    if value in (0.0, 1.0):
        return "True" if value == 1.0 else "False"
    return f"{value:.4f}"
