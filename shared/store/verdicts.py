"""The judge's verdicts on answered requests (table judge_verdicts, migration 0003), and how
often they agree with human feedback on the same request.

Agreement compares, for each request with both a verdict and feedback (the newest feedback row),
the human score of the model the feedback names with the judge's outcome for that model:
the human calls an answer good at a score >= 0.5; the judge calls it better (outcome 1), worse
(0) or a tie (0.5). They agree when good meets better or bad meets worse. Ties are reported
apart and left out of the rate: a tie says nothing about one answer alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from .db import Database, unavailable_as

GOOD_SCORE = 0.5


@dataclass(frozen=True)
class JudgeVerdict:
    request_id: str
    tenant: str
    answer_model: str
    shadow_model: str
    judge_model: str
    answer_outcome: float
    shadow_outcome: float
    orders_agree: bool


class VerdictSink(Protocol):
    async def record(self, verdict: JudgeVerdict) -> None: ...


class MemoryVerdicts:
    """Keeps verdicts in memory (no database)."""

    def __init__(self) -> None:
        self.rows: dict[str, JudgeVerdict] = {}

    async def record(self, verdict: JudgeVerdict) -> None:
        self.rows[verdict.request_id] = verdict


INSERT_VERDICT = (
    "INSERT INTO judge_verdicts (request_id, tenant, answer_model, shadow_model, judge_model,"
    " answer_outcome, shadow_outcome, orders_agree) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (request_id) DO UPDATE SET answer_outcome = EXCLUDED.answer_outcome,"
    " shadow_outcome = EXCLUDED.shadow_outcome, orders_agree = EXCLUDED.orders_agree,"
    " judge_model = EXCLUDED.judge_model"
)

# judge: the judge's outcome for the model the newest feedback on the request names
AGREEMENT_QUERY = """
WITH pairs AS (
  SELECT CASE WHEN f.model = v.shadow_model THEN v.shadow_outcome ELSE v.answer_outcome END AS judge,
         f.score AS human
    FROM judge_verdicts v
    JOIN LATERAL (
      SELECT score, coalesce(model, v.answer_model) AS model FROM feedback
       WHERE request_id = v.request_id AND tenant = v.tenant ORDER BY id DESC LIMIT 1
    ) f ON true
   WHERE v.tenant = %(tenant)s AND v.created_at >= %(start)s AND v.created_at < %(end)s
     AND f.model IN (v.answer_model, v.shadow_model)
)
SELECT count(*) FILTER (WHERE human >= %(good)s AND judge > 0.5),
       count(*) FILTER (WHERE human >= %(good)s AND judge = 0.5),
       count(*) FILTER (WHERE human >= %(good)s AND judge < 0.5),
       count(*) FILTER (WHERE human < %(good)s AND judge > 0.5),
       count(*) FILTER (WHERE human < %(good)s AND judge = 0.5),
       count(*) FILTER (WHERE human < %(good)s AND judge < 0.5),
       avg(abs(human - judge))
  FROM pairs
"""


def agreement_report(cells: tuple[int, int, int, int, int, int], mean_abs_diff: float | None) -> dict[str, Any]:
    good_better, good_tie, good_worse, bad_better, bad_tie, bad_worse = cells
    agree = good_better + bad_worse
    decided = agree + good_worse + bad_better
    return {
        "pairs": sum(cells),
        "decided": decided,
        "ties": good_tie + bad_tie,
        "agree": agree,
        "agreement": round(agree / decided, 4) if decided else None,
        "mean_abs_difference": round(mean_abs_diff, 4) if mean_abs_diff is not None else None,
        "matrix": {
            "human_good": {"judge_better": good_better, "judge_tie": good_tie, "judge_worse": good_worse},
            "human_bad": {"judge_better": bad_better, "judge_tie": bad_tie, "judge_worse": bad_worse},
        },
        "good_score": GOOD_SCORE,
    }


class PostgresVerdicts:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def record(self, verdict: JudgeVerdict) -> None:
        v = verdict
        async with unavailable_as("verdicts"):
            await self.db.ensure_schema()
            async with self.db.connection() as conn:
                await conn.execute(
                    INSERT_VERDICT,
                    (
                        v.request_id,
                        v.tenant,
                        v.answer_model,
                        v.shadow_model,
                        v.judge_model,
                        v.answer_outcome,
                        v.shadow_outcome,
                        v.orders_agree,
                    ),
                )

    async def agreement(self, tenant: str, start: datetime, end: datetime) -> dict[str, Any]:
        params = {"tenant": tenant, "start": start, "end": end, "good": GOOD_SCORE}
        async with unavailable_as("verdicts"):
            await self.db.ensure_schema()
            async with self.db.connection() as conn:
                cur = await conn.execute(AGREEMENT_QUERY, params)
                row = await cur.fetchone()
        assert row is not None
        cells = (int(row[0]), int(row[1]), int(row[2]), int(row[3]), int(row[4]), int(row[5]))
        return agreement_report(cells, float(row[6]) if row[6] is not None else None)
