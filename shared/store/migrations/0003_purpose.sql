-- 0003: what a request-log row was for (the caller's answer, or a shadow or judge call made after
-- it to label traffic), the answer it belongs to, and the judge's verdicts.

ALTER TABLE request_log ADD COLUMN IF NOT EXISTS purpose text NOT NULL DEFAULT 'answer'
    CHECK (purpose IN ('answer', 'shadow', 'judge'));
-- a shadow or judge row points at the answered request that caused it
ALTER TABLE request_log ADD COLUMN IF NOT EXISTS parent_request_id text;
CREATE INDEX IF NOT EXISTS request_log_parent_idx ON request_log (parent_request_id)
    WHERE parent_request_id IS NOT NULL;

-- The rollup keeps shadow and judge spend apart from the caller's, so usage can leave it out.
ALTER TABLE usage_daily ADD COLUMN IF NOT EXISTS purpose text NOT NULL DEFAULT 'answer';
ALTER TABLE usage_daily DROP CONSTRAINT IF EXISTS usage_daily_pkey;
ALTER TABLE usage_daily ADD PRIMARY KEY (tenant, day, model, purpose);

-- One row per judged answer: the two models, the judge's outcome for each (1 better, 0 worse,
-- 0.5 tie), and whether the two presentation orders agreed. Read with feedback for agreement.
CREATE TABLE IF NOT EXISTS judge_verdicts (
    request_id      text PRIMARY KEY,
    tenant          text NOT NULL,
    answer_model    text NOT NULL,
    shadow_model    text NOT NULL,
    judge_model     text NOT NULL,
    answer_outcome  double precision NOT NULL CHECK (answer_outcome >= 0 AND answer_outcome <= 1),
    shadow_outcome  double precision NOT NULL CHECK (shadow_outcome >= 0 AND shadow_outcome <= 1),
    orders_agree    boolean NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS judge_verdicts_tenant_created_idx ON judge_verdicts (tenant, created_at);
