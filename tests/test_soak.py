"""The soak (issue #16, done-when: RSS flat after warm-up), short form: large unique prompts through
the local host (`python -m devtools.localhost`, a subprocess on loopback) against the fake upstream
for 40 s, the router's RSS sampled every second. `python -m bench.soak --minutes 10` is the long
form (docs/performance.md). Before the byte budgets, every 110 KB prompt grew the router ~1 MB."""

from __future__ import annotations

import pytest

from bench.soak import MIB, SoakConfig, curve, run_soak

DURATION_S, WARMUP_S = 40.0, 20.0
MAX_GROWTH_PCT = 10.0


@pytest.mark.timeout(300)
def test_rss_is_flat_after_warm_up_under_large_unique_prompts(pg_url: str) -> None:
    cfg = SoakConfig(
        duration_s=DURATION_S,
        warmup_s=WARMUP_S,
        prompt_kb=110,
        concurrency=4,
        max_requests=5000,
        # small budgets, so that the warm-up fills them and what follows shows nothing else grows
        cache_max_bytes=1 * MIB,
        prompt_max_bytes=4 * MIB,
        database_url=pg_url,
    )
    result = run_soak(cfg, log=lambda _: None)
    print(curve(result, every_s=5))
    assert result.failures == 0, result.failure_examples
    assert result.requests >= 40, "too few requests to say anything about memory"
    assert len([s for s in result.samples if s[0] >= WARMUP_S]) >= 10
    assert result.growth_pct < MAX_GROWTH_PCT, (
        f"RSS grew {result.growth_pct}% after warm-up ({result.baseline_mb} -> {result.max_after_warmup_mb} MiB)"
    )
