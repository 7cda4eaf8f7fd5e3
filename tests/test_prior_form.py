"""Whether a tenant's prior takes the shared estimate as an input (shared/routing/prior_form.py),
chosen on its prompts labelled for two models by how well each form's cross-fitted prior
predicts the gain."""

from __future__ import annotations

import numpy as np

from shared.routing.prior_form import MIN_PAIRED, KeyRows, choose_form
from shared.routing.tenant_prior import fit_tenant_prior

TOPICS = ["invoice", "refund", "shipping", "warranty"]


def _text(i: int, long: bool) -> str:
    topic = TOPICS[i % len(TOPICS)]
    if not long:
        return f"{topic} question {i}?"
    return f"{topic} question {i}: " + " ".join(f"step {j} of the {topic} case" for j in range(10))


def _tenant(
    n: int, *, shared_knows: str, paired: bool = True, seed: int = 0
) -> tuple[list[str], list[dict[str, float]], list[dict[str, float]]]:
    """A tenant's examples, one per model per prompt as feedback makes them. Each prompt has a
    level both models share (how hard it is) and the big model gains 0.3 on the long ones and on
    a hidden third of the short ones. `shared_knows`: what the shared examples' estimate reads
    - "big's level": the big model's level only, nothing of the small one's or of the gain;
    - "the gain": both levels and the hidden gain."""
    rng = np.random.default_rng(seed)
    texts, outcomes, shared = [], [], []
    for i in range(n):
        long = i % 2 == 0
        level = float(rng.uniform(0.2, 0.6))
        gain = 0.3 if long or rng.random() < 1 / 3 else 0.0
        truth = {"big": level + gain, "small": level}
        if shared_knows == "big's level":
            estimate = {"big": level + rng.normal(0, 0.02), "small": float(rng.uniform(0.2, 0.6))}
        else:
            estimate = {"big": level + gain + rng.normal(0, 0.02), "small": level + rng.normal(0, 0.02)}
        for key in ("big", "small") if paired else (("big", "small")[i % 2],):
            texts.append(_text(i, long))
            outcomes.append({key: truth[key]})
            shared.append({key: float(estimate[key])})
    return texts, outcomes, shared


def test_a_shared_estimate_that_knows_one_models_level_and_not_the_gain_is_dropped() -> None:
    """With it as an input, the big model's prior follows the prompt's level and the small one's
    cannot: their difference, the gain routing ranks by, takes the level's noise. Without it,
    both miss the level alike and the prompt's form gives the gain."""
    texts, outcomes, shared = _tenant(300, shared_knows="big's level")
    prior = fit_tenant_prior(texts, outcomes, shared)
    assert prior is not None and not prior.shared_input
    # the shared estimate no longer moves the prior, and the prompt's form still does
    low, high = (prior.targets(_text(1, False), [("big",)], [s])[0] for s in (0.1, 0.9))
    assert low is not None and high is not None and low[0] == high[0]
    long, short = (prior.targets(_text(7, lg), [("big",), ("small",)], [0.5, 0.5]) for lg in (True, False))
    long_gain, short_gain = (t[0][0] - t[1][0] for t in (long, short) if t[0] and t[1])
    assert long_gain > short_gain + 0.15


def test_a_shared_estimate_that_knows_the_gain_is_kept() -> None:
    texts, outcomes, shared = _tenant(300, shared_knows="the gain")
    prior = fit_tenant_prior(texts, outcomes, shared)
    assert prior is not None and prior.shared_input
    low, high = (prior.targets(_text(1, False), [("big",)], [s])[0] for s in (0.2, 0.8))
    assert low is not None and high is not None and high[0] - low[0] > 0.3


def _key_rows(outcomes: list[dict[str, float]], shared: list[dict[str, float]]) -> dict[str, KeyRows]:
    return {
        key: KeyRows(
            np.array([i for i, o in enumerate(outcomes) if key in o]),
            np.array([s[key] for s in shared if key in s]),
            np.array([o[key] for o in outcomes if key in o]),
        )
        for key in ("big", "small")
    }


def _features(texts: list[str]) -> np.ndarray:
    """An intercept (the ridge leaves the first column unshrunk) and the prompt's standardised length."""
    length = np.array([float(len(t)) for t in texts])
    return np.column_stack([np.ones(len(texts)), (length - length.mean()) / length.std()])


def test_the_choice_needs_prompts_labelled_for_two_models() -> None:
    """Feedback on one model per prompt says nothing of the gain: the shared input stays."""
    texts, outcomes, shared = _tenant(600, shared_knows="big's level", paired=False)
    prior = fit_tenant_prior(texts, outcomes, shared)
    assert prior is not None and prior.shared_input and set(prior.weights) == {"big", "small"}
    # and fewer than MIN_PAIRED paired prompts are too few to choose by
    texts, outcomes, shared = _tenant(MIN_PAIRED - 1, shared_knows="big's level")
    z = _features(texts)
    choice = choose_form(texts, _key_rows(outcomes, shared), z, z, 1.0)
    assert choice.shared_input and choice.paired == MIN_PAIRED - 1 and choice.margin == 0.0
    texts, outcomes, shared = _tenant(MIN_PAIRED, shared_knows="big's level")
    z = _features(texts)
    choice = choose_form(texts, _key_rows(outcomes, shared), z, z, 1.0)
    assert not choice.shared_input and choice.paired == MIN_PAIRED and choice.margin > 0.0


def test_a_prompt_is_known_by_its_vector_when_the_tenant_stores_no_text() -> None:
    """Examples without text are paired by their vectors, as the leave-one-out pairs them. With
    the shared input, the big model's prior follows the level and the small one's cannot; without
    it, both miss the level alike and the gain's error is only the gain's own spread."""
    texts, outcomes, shared = _tenant(300, shared_knows="big's level")
    rng = np.random.default_rng(1)
    by_text = {t: rng.normal(size=8) for t in dict.fromkeys(texts)}
    vectors = np.stack([by_text[t] / np.linalg.norm(by_text[t]) for t in texts]).astype(np.float32)
    prior = fit_tenant_prior([""] * len(texts), outcomes, shared, vectors=vectors)
    assert prior is not None and not prior.shared_input
    # without the vectors every empty text is one prompt, and none is paired
    unpaired = fit_tenant_prior([""] * len(texts), outcomes, shared)
    assert unpaired is not None and unpaired.shared_input
