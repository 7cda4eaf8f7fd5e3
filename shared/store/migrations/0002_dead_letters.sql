-- 0002: rows the database refused (a value it cannot store), kept instead of blocking the writer.
-- `payload` is the row as JSON with its text made storable (NUL and lone surrogates replaced);
-- `error_class` is the driver's class and SQLSTATE, `error_message` its primary message.

CREATE TABLE IF NOT EXISTS dead_letters (
    id            bigserial PRIMARY KEY,
    kind          text NOT NULL,
    row_id        text,
    tenant        text,
    payload       jsonb NOT NULL,
    error_class   text NOT NULL,
    error_message text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS dead_letters_created_idx ON dead_letters (created_at);
CREATE INDEX IF NOT EXISTS dead_letters_kind_row_idx ON dead_letters (kind, row_id);
