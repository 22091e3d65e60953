-- Release control: each release moves a service from its stable version to a target version by
-- a strategy (canary, blue_green, rolling, rollback), as a state machine whose allowed
-- transitions live in code (server/src/releases/transitions.rs). Traffic itself is changed only
-- in traffic_policies, in the same transaction as the release row, its history row, the audit
-- row and the events.

-- The version that is stable now (set by promote, rollback, abort of a first release…). NULL
-- before the first release: then the version with 100 % in the policy, or the only version
-- with instances, counts as stable.
ALTER TABLE services ADD COLUMN stable_version TEXT;

CREATE TABLE releases (
    id                    BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    service_id            BIGINT NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    strategy              TEXT NOT NULL CHECK (strategy IN ('canary', 'blue_green', 'rolling', 'rollback')),
    state                 TEXT NOT NULL CHECK (state IN ('progressing', 'paused', 'awaiting_promotion', 'ready',
                                                         'smoke_failed', 'switched', 'completed', 'aborted',
                                                         'rolled_back', 'failed')),
    stable_version        TEXT NOT NULL,
    target_version        TEXT NOT NULL,
    -- Canary steps [{"percent", "hold_seconds"}]; the current one by index.
    steps                 JSONB NOT NULL DEFAULT '[]'::jsonb CHECK (jsonb_typeof(steps) = 'array'),
    step_index            INTEGER NOT NULL DEFAULT 0 CHECK (step_index >= 0),
    current_percent       SMALLINT NOT NULL DEFAULT 0 CHECK (current_percent BETWEEN 0 AND 100),
    max_jump              SMALLINT NOT NULL DEFAULT 50 CHECK (max_jump BETWEEN 1 AND 100),
    -- When the current step's hold ends; pushed back by each inconclusive interval (held step).
    step_ends_at          TIMESTAMPTZ,
    -- Since when the step has been held for want of data (NULL: not held).
    held_since            TIMESTAMPTZ,
    analysis              JSONB,
    last_analysis_at      TIMESTAMPTZ,
    consecutive_breaches  INTEGER NOT NULL DEFAULT 0,
    last_verdict          JSONB,
    smoke_checks          JSONB NOT NULL DEFAULT '[]'::jsonb CHECK (jsonb_typeof(smoke_checks) = 'array'),
    -- The last smoke run: NULL never run, else whether every check passed.
    smoke_passed          BOOLEAN,
    schema_phase          TEXT CHECK (schema_phase IN ('expand', 'contract')),
    schema_description    TEXT,
    policy_revision       BIGINT NOT NULL DEFAULT 0,
    started_by            TEXT NOT NULL,
    started_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at           TIMESTAMPTZ,
    -- Who ended it ("system release-analysis" for an automatic rollback).
    finished_by           TEXT,
    status_reason         TEXT,
    CHECK ((schema_phase IS NULL) = (schema_description IS NULL))
);
-- One release in progress per service.
CREATE UNIQUE INDEX releases_one_active ON releases (service_id)
    WHERE state NOT IN ('completed', 'aborted', 'rolled_back', 'failed');
CREATE INDEX releases_by_service ON releases (service_id, id DESC);

-- Every action on a release, with the weights before and after and the verdict at the time.
CREATE TABLE release_actions (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    release_id      BIGINT NOT NULL REFERENCES releases (id) ON DELETE CASCADE,
    at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    actor           TEXT NOT NULL,
    action          TEXT NOT NULL,
    from_state      TEXT,
    to_state        TEXT NOT NULL,
    weights_before  JSONB NOT NULL DEFAULT '[]'::jsonb,
    weights_after   JSONB NOT NULL DEFAULT '[]'::jsonb,
    verdict         JSONB,
    reason          TEXT
);
CREATE INDEX release_actions_by_release ON release_actions (release_id, id DESC);

-- Each analysis interval's verdict, with its numbers.
CREATE TABLE release_verdicts (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    release_id  BIGINT NOT NULL REFERENCES releases (id) ON DELETE CASCADE,
    at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    outcome     TEXT NOT NULL CHECK (outcome IN ('pass', 'fail', 'inconclusive')),
    verdict     JSONB NOT NULL
);
CREATE INDEX release_verdicts_by_release ON release_verdicts (release_id, id DESC);

-- Idempotency keys of release and traffic actions, per actor: a repeat of a key returns the
-- stored answer and changes nothing; the same key with another request is refused.
CREATE TABLE idempotency_keys (
    actor         TEXT NOT NULL,
    key           TEXT NOT NULL CHECK (length(key) BETWEEN 1 AND 200),
    request_hash  BYTEA NOT NULL,
    -- 0 while the first request is still being carried out (its transaction holds the row).
    status        SMALLINT NOT NULL DEFAULT 0,
    body          JSONB NOT NULL DEFAULT 'null'::jsonb,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (actor, key)
);
CREATE INDEX idempotency_keys_age ON idempotency_keys (created_at);
