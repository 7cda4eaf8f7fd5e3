-- 0001: request log with a daily usage rollup, feedback, async jobs, backup checks.

CREATE TABLE IF NOT EXISTS request_log (
    id                text PRIMARY KEY,
    tenant            text,
    requested_model   text NOT NULL,
    policy            text,
    chosen_model      text,
    decision          jsonb,
    cache             text NOT NULL,
    prompt_tokens     integer NOT NULL DEFAULT 0,
    completion_tokens integer NOT NULL DEFAULT 0,
    cost_usd          numeric(20, 10) NOT NULL DEFAULT 0,
    latency_ms        double precision NOT NULL DEFAULT 0,
    upstream_ms       double precision NOT NULL DEFAULT 0,
    overhead_ms       double precision NOT NULL DEFAULT 0,
    status            integer NOT NULL DEFAULT 200,
    error_code        text,
    stream            boolean NOT NULL DEFAULT false,
    usage_source      text NOT NULL DEFAULT 'provider',
    fallbacks         jsonb NOT NULL DEFAULT '[]'::jsonb,
    source            text NOT NULL DEFAULT 'http',
    prompt_text       text,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS request_log_tenant_created_idx ON request_log (tenant, created_at);
-- Admin usage queries span every tenant; the partial days at the edges of a range read the log.
CREATE INDEX IF NOT EXISTS request_log_created_idx ON request_log (created_at);

-- Kept in the same transaction as the log insert, so usage queries read one row per
-- (tenant, UTC day, model) instead of scanning the log.
CREATE TABLE IF NOT EXISTS usage_daily (
    tenant            text NOT NULL,
    day               date NOT NULL,
    model             text NOT NULL,
    requests          bigint NOT NULL DEFAULT 0,
    prompt_tokens     bigint NOT NULL DEFAULT 0,
    completion_tokens bigint NOT NULL DEFAULT 0,
    cost_usd          numeric(24, 10) NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, day, model)
);
CREATE INDEX IF NOT EXISTS usage_daily_day_idx ON usage_daily (day);

CREATE TABLE IF NOT EXISTS feedback (
    id           bigserial PRIMARY KEY,
    request_id   text NOT NULL,
    tenant       text NOT NULL,
    score        double precision NOT NULL CHECK (score >= 0 AND score <= 1),
    model        text,
    comment      text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    processed_at timestamptz
);
CREATE INDEX IF NOT EXISTS feedback_request_idx ON feedback (request_id);
CREATE INDEX IF NOT EXISTS feedback_tenant_created_idx ON feedback (tenant, created_at);
-- The examples feeder picks up what it has not processed yet.
CREATE INDEX IF NOT EXISTS feedback_unprocessed_idx ON feedback (created_at) WHERE processed_at IS NULL;

CREATE TABLE IF NOT EXISTS jobs (
    id          uuid PRIMARY KEY,
    tenant      text NOT NULL,
    status      text NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'dead_lettered')),
    request     jsonb NOT NULL,
    reply_to    text,
    metadata    jsonb,
    result      jsonb,
    error       jsonb,
    attempts    integer NOT NULL DEFAULT 0,
    request_id  text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    started_at  timestamptz,
    finished_at timestamptz
);
CREATE INDEX IF NOT EXISTS jobs_tenant_created_idx ON jobs (tenant, created_at);

CREATE TABLE IF NOT EXISTS backup_checks (
    id                  bigserial PRIMARY KEY,
    checked_at          timestamptz NOT NULL DEFAULT now(),
    backend             text NOT NULL,
    latest_backup_id    text,
    latest_status       text,
    latest_completed_at timestamptz,
    age_hours           double precision,
    action              text NOT NULL,
    started_backup_id   text,
    ok                  boolean NOT NULL,
    detail              text
);
CREATE INDEX IF NOT EXISTS backup_checks_checked_idx ON backup_checks (checked_at DESC);
