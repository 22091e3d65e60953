-- Aggregated log lines from services and agents (POST /api/v1/logs), searched by time, level,
-- context, trace id and full text (GET /api/v1/logs).
--
-- Partitioned by day on `at` so retention drops whole partitions (no DELETE, no bloat, no
-- vacuum debt). The partitions themselves are created by the server (`server/src/logs/
-- partitions.rs`): a few days ahead by a worker, and on demand for an accepted line whose day
-- has none yet; they are named log_lines_pYYYYMMDD and cover [day 00:00 UTC, next day 00:00 UTC).
-- There is deliberately no DEFAULT partition: rows in it would block creating the day's
-- partition later.
--
-- level is a smallint so "at least warning" is a range: 0 debug, 1 info, 2 warning, 3 error,
-- 4 fatal (app::model::logs::LogLevel). The full-text column uses the 'simple' configuration:
-- log text is identifiers, codes and paths more than English prose, so no stemming and no
-- stop words.

CREATE TABLE log_lines (
    id          BIGINT GENERATED ALWAYS AS IDENTITY,
    at          TIMESTAMPTZ NOT NULL,
    received_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    level       SMALLINT NOT NULL CHECK (level BETWEEN 0 AND 4),
    message     TEXT NOT NULL,
    cluster     TEXT,
    node        TEXT,
    service     TEXT,
    instance    TEXT,
    component   TEXT,
    trace_id    TEXT,
    fields      JSONB NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(fields) = 'object'),
    search      TSVECTOR GENERATED ALWAYS AS (to_tsvector('simple', message)) STORED,
    PRIMARY KEY (at, id)
) PARTITION BY RANGE (at);

-- Newest first with a keyset cursor on (at, id): the primary key's index serves it backwards.
CREATE INDEX log_lines_search_idx ON log_lines USING GIN (search);
CREATE INDEX log_lines_trace_idx ON log_lines (trace_id) WHERE trace_id IS NOT NULL;
CREATE INDEX log_lines_service_at_idx ON log_lines (service, at DESC);
