-- Events: every change people should see live (instances registered, expired, removed; health
-- and breaker changes; clusters, nodes and services edited). Each row is sent to every
-- `opsdeck serve` with NOTIFY when its transaction commits, so every replica's event stream
-- sees every change; the table lets a client that reconnects resume after the last id it saw
-- (SSE `Last-Event-ID`). Writers take a transaction-level advisory lock before inserting (see
-- server/src/events/mod.rs), so ids become visible in increasing order.

CREATE TABLE events (
    id       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    kind     TEXT NOT NULL,
    payload  JSONB NOT NULL
);
CREATE INDEX events_at ON events (at);

-- The whole row goes in the notification (payloads are kept small by the writer; NOTIFY allows
-- 8000 bytes), so listeners need no query per event.
CREATE FUNCTION events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('opsdeck_events', json_build_object('id', NEW.id, 'at', NEW.at, 'kind', NEW.kind, 'payload', NEW.payload)::text);
    RETURN NULL;
END
$$;
CREATE TRIGGER events_notify AFTER INSERT ON events FOR EACH ROW EXECUTE FUNCTION events_notify();

-- The circuit breaker in front of each instance's health checks, as the checker last saw it.
ALTER TABLE instances ADD COLUMN breaker TEXT NOT NULL DEFAULT 'closed' CHECK (breaker IN ('closed', 'open', 'half_open'));
