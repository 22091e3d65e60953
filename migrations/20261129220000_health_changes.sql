-- The history of every instance health change, with its reason (timeout, connection refused,
-- HTTP status, body), so the service page can show what happened and when. The current state
-- stays on `instances`; this table only grows (retention comes with the retention worker).

CREATE TABLE instance_health_changes (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    instance_id  UUID NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    from_health  TEXT NOT NULL,
    to_health    TEXT NOT NULL,
    reason       TEXT NOT NULL
);
CREATE INDEX instance_health_changes_instance ON instance_health_changes (instance_id, at DESC);
