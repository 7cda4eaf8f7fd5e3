"""A tenant's own vector space: its prompts searched with an encoder fitted on its own texts.

Every vector in the index comes from one encoder, whose tf-idf vocabulary and basis were fitted
on the shipped examples. For a tenant from a domain those never covered (MMLU held out, competition
math) that basis describes its prompts poorly, and its own neighbours are found by form words: a
router trained on the tenant's rows alone, with an encoder fitted on them, did 0.03-0.04 APGR
better at a few hundred rows and more. For a tenant of diverse instructions the shipped basis is
the better metric (open-ended chat lost up to 0.011 with its own). So it is chosen per tenant,
on its own labels (`fit_tenant_space`): each of its examples is estimated from the other half of
its prompts in both spaces, with an encoder fitted on that half only (a prompt the encoder was fitted
on would look closer to its neighbours than a new prompt does), and the tenant's own space is taken
only if its squared error is significantly smaller (docs/routing-quality.md, "A tenant's own space").

The space lives in memory beside the tenant's prior (`TenantPrior.space`) and is refitted with it:
examples added or removed since the last fit wait for the next one (TENANT_PRIOR_REFRESH_S). The
one measured source where the choice errs is CRUXEval (code): 0.538 -> 0.526 at "all", six seeds.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..encoders.tfidf_fit import encode_rows, fit_rows, ngram_rows
from ..encoders.tfidf_svd import TfidfSvdEncoder
from ..examples.labelled import LabelledExample, Neighbours, evidence_matrix
from ..examples.nearest import top_k
from .predictor import PredictorParams

log = logging.getLogger(__name__)

# a basis of 128 directions fitted on fewer prompts than this is mostly their own words
MIN_PROMPTS = 120
# examples read for the space (the prior reads fewer: each of its rows costs a shared search).
# MMLU's learned half holds 13,936: at 10,000 its space fell 0.005 short (docs/routing-quality.md,
# "the tenant space's limits"); 20,000 examples of distinct prompts are 10 MB of vectors
MAX_EXAMPLES = 20_000
# the tenant's encoder keeps at most this many n-grams, as the shipped encoder does (8,192 cost
# MMLU's tenant 0.003); its basis is 128 x this in float16, 8.4 MB at the cap, which only a tenant
# of some 5,000 prompts or more reaches
MAX_VOCAB = 32_768
# tenants holding a space at once, per process, and the memory their spaces may hold together
# (`TenantSpace.nbytes`; MMLU's 13,936 examples hold 19 MB, traced 18): least recently used go first
MAX_SPACES = 16
MAX_SPACE_BYTES = 256 << 20
# standard errors by which the tenant's space must beat the shared one (as the prior's strength)
SIGNIFICANCE = 2.0
# the encoder's lookups per n-gram: `_basis_row` (a dict entry and its int keys and values) and
# `_basis_idf` (a list slot and a float); measured with tracemalloc at 32,768 n-grams
_BYTES_PER_NGRAM = 132
_CHUNK = 512  # queries per similarity block in the choice (512 x 10,000 float32 = 20 MB)

# per example scored in the choice: for each of its outcome keys, (target, strength) of the
# tenant's estimate as a decision makes it (its prior, or the shared estimate)
Targets = Sequence[Mapping[str, tuple[float, float]]]


@dataclass(frozen=True)
class TenantSpace:
    """The tenant's examples as vectors of its own encoder, searched exactly like `search_own`."""

    encoder: TfidfSvdEncoder
    # one unit row per distinct prompt, and each example's prompt: feedback makes an example per
    # answering model, so a prompt's row is searched once (10,000 examples of MMLU's learned
    # half: 0.24 ms of product read 5 MB, half of it twice)
    prompts: np.ndarray
    group: np.ndarray
    ids: np.ndarray  # the examples' ids (object array)
    keys: tuple[str, ...]
    evidence: np.ndarray  # examples x [weight | presence per key | outcome per key]
    gain: float  # mean squared error the choice saved per example, for the log

    @cached_property
    def nbytes(self) -> int:
        """The memory the space holds, near enough to budget by: its arrays and id strings, and
        its encoder's arrays and per-n-gram lookups (a dict entry, an int and a float each)."""
        enc = self.encoder
        arrays = (self.prompts, self.group, self.evidence, self.ids, enc.idf, enc.kept_buckets, enc.components)
        return (
            sum(a.nbytes for a in arrays)
            + sum(sys.getsizeof(i) for i in self.ids)
            + len(enc.kept_buckets) * _BYTES_PER_NGRAM
        )

    def search(self, text: str, k: int) -> Neighbours:
        """The k most similar of the tenant's examples to `text`, in its own space."""
        sims = (self.prompts @ self.encoder.encode_one(text))[self.group]
        top, top_sims = top_k(np.arange(len(sims)), sims, k)
        found = self.evidence[top]
        return Neighbours.from_evidence(self.ids, top_sims, found[:, 0], self.keys, found[:, 1:], positions=top)


def fit_tenant_space(
    examples: Sequence[LabelledExample],
    vectors: np.ndarray,
    scored: Sequence[int],
    targets: Targets,
    params: PredictorParams,
    *,
    min_prompts: int = MIN_PROMPTS,
    seed: int = 0,
) -> TenantSpace | None:
    """The tenant's own space if it estimates the tenant's labels significantly better than the
    shared one, else None. `vectors` are the examples' shared-space vectors; `scored[j]` is the
    position of the j-th example scored, and `targets[j]` its keys' targets (the prior's rows).

    Prompts are split in two halves by text; each half's examples are estimated from the other
    half's own_k nearest, in the shared space and in the space of an encoder fitted on the other
    half's texts only, which is what a decision does with a new prompt. The paired difference of
    the two squared errors decides, at `SIGNIFICANCE` standard errors."""
    texts = [ex.content for ex in examples]
    if any(not t for t in texts):  # a tenant that stores no prompt text has no texts to fit on
        return None
    prompt: dict[str, int] = {}
    group = np.array([prompt.setdefault(t, len(prompt)) for t in texts])
    if len(prompt) < 2 * min_prompts:
        return None
    keys = sorted({k for ex in examples for k in ex.outcomes})
    weights = np.array([ex.weight for ex in examples], dtype=np.float64)
    evidence = np.hstack(
        [weights[:, None], evidence_matrix(np.array([[ex.outcomes.get(k, np.nan) for k in keys] for ex in examples]))]
    )
    # each prompt hashed once, for the three encoders fitted and the vectors they give
    prompts = _Prompts(list(prompt), group, seed)
    choice = _Choice(examples, vectors, evidence, {k: j for j, k in enumerate(keys)}, params, prompts)
    diff = choice.paired_differences(group % 2, np.asarray(scored, dtype=np.int64), targets)
    if diff is None or not len(diff):
        return None
    gain, se = float(diff.mean()), float(diff.std()) / np.sqrt(len(diff))
    log.debug("own space against the shared one: %.5f less squared error (se %.5f, %d examples)", gain, se, len(diff))
    fitted = prompts.fit(np.arange(len(prompt))) if gain > SIGNIFICANCE * se else None
    if fitted is None:
        return None
    encoder, by_prompt = fitted
    return TenantSpace(
        encoder=encoder,
        prompts=np.ascontiguousarray(by_prompt, dtype=np.float32),
        group=group,
        ids=np.array([ex.id for ex in examples], dtype=object),
        keys=tuple(keys),
        evidence=evidence,
        gain=gain,
    )


@dataclass(frozen=True)
class _Choice:
    """The leave-one-out comparison of the two spaces over one tenant's examples."""

    examples: Sequence[LabelledExample]
    vectors: np.ndarray  # shared space
    evidence: np.ndarray  # [weight | presence per key | outcome per key]
    position: Mapping[str, int]
    params: PredictorParams
    prompts: _Prompts

    def paired_differences(self, half: np.ndarray, scored: np.ndarray, targets: Targets) -> np.ndarray | None:
        """Per scored example, its squared error in the shared space minus that in its own; None
        if a half's texts span no space."""
        group = self.prompts.group
        diffs: list[np.ndarray] = []
        for h in (0, 1):
            pool = np.flatnonzero(half != h)
            mine = np.flatnonzero(half[scored] == h)  # positions in `scored`
            if not len(mine):
                continue
            queries = scored[mine]
            # the encoder of the other half's prompts, and every prompt's vector in its space
            fitted = self.prompts.fit(np.unique(group[pool]))
            if fitted is None:
                return None
            by_prompt = fitted[1]
            wanted = [
                (targets[j], self.examples[i].outcomes) for j, i in zip(mine.tolist(), queries.tolist(), strict=True)
            ]
            shared = self._errors(self.vectors[queries], self.vectors[pool], pool, wanted)
            own = self._errors(by_prompt[group[queries]], by_prompt[group[pool]], pool, wanted)
            diffs.append(shared - own)
        return np.concatenate(diffs) if diffs else None

    def _errors(
        self,
        queries: np.ndarray,
        pool_vectors: np.ndarray,
        pool: np.ndarray,
        wanted: Sequence[tuple[Mapping[str, tuple[float, float]], Mapping[str, float]]],
    ) -> np.ndarray:
        """Each query's squared error over its keys (`wanted`: per query, its targets and its true
        outcomes), estimated from its own_k nearest in the pool shrunk toward its targets, as
        `predictor.estimate` does with a tenant's own neighbours."""
        n_keys, power = len(self.position), self.params.similarity_power
        evidence = self.evidence[pool]
        k = max(1, min(self.params.own_k, len(pool)))
        out = np.zeros(len(queries))
        for start in range(0, len(queries), _CHUNK):
            sims = queries[start : start + _CHUNK] @ pool_vectors.T
            top = (
                np.argpartition(-sims, k - 1, axis=1)[:, :k]
                if k < len(pool)
                else np.tile(np.arange(len(pool)), (len(sims), 1))
            )
            w = np.maximum(np.take_along_axis(sims, top, axis=1), 0.0).astype(np.float64) ** power * evidence[top, 0]
            # per query and key: the similarity mass that carries the key, and the weighted outcomes
            found = evidence[top][:, :, 1:]
            mass = np.einsum("qk,qkj->qj", w, found[:, :, :n_keys])
            total = np.einsum("qk,qkj->qj", w, found[:, :, n_keys:])
            for row, (targets, truth) in enumerate(wanted[start : start + _CHUNK]):
                for key, (target, strength) in targets.items():
                    j = self.position[key]
                    estimate = (total[row, j] + strength * target) / (mass[row, j] + strength)
                    out[start + row] += (estimate - truth[key]) ** 2
        return out


def spaces_over_budget(sizes: Sequence[int], max_spaces: int, max_bytes: int) -> int:
    """How many of the spaces held (their `nbytes`, least recently used first) to drop so that
    at most `max_spaces` remain, holding at most `max_bytes` together."""
    count, held = len(sizes), sum(sizes)
    for drop, size in enumerate(sizes):
        if count - drop <= max_spaces and held <= max_bytes:
            return drop
        held -= size
    return len(sizes)


def examples_fingerprint(examples: Sequence[LabelledExample]) -> int:
    """Which examples, with which outcomes and weights: equal for an unchanged set."""
    return hash(tuple((ex.id, ex.weight, tuple(sorted(ex.outcomes.items()))) for ex in examples))


class _Prompts:
    """A tenant's distinct prompts, hashed once (`group[i]`: example i's prompt)."""

    def __init__(self, texts: Sequence[str], group: np.ndarray, seed: int) -> None:
        self.group, self.seed = group, seed
        self.rows = ngram_rows(texts)
        self._order = np.argsort(np.array(texts, dtype=object))  # by text: any listing order fits alike

    def fit(self, prompts: np.ndarray) -> tuple[TfidfSvdEncoder, np.ndarray] | None:
        """An encoder fitted on these prompts and every prompt's vector in its space; None where
        they share too few words to span a space (each word in one prompt only, say)."""
        chosen = self._order[np.isin(self._order, prompts)]
        encoder = fit_rows([self.rows[p] for p in chosen], max_vocab=MAX_VOCAB, seed=self.seed)
        if encoder.dim < 2 or len(encoder.kept_buckets) <= encoder.dim:
            return None
        return encoder, encode_rows(encoder, self.rows)
