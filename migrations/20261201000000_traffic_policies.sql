-- Traffic policy: how each service's requests are shared between its versions. The data plane
-- (`opsdeck router`, or HAProxy driven by it) reads this table; release control writes it.
--
-- Every change raises `revision` by one (optimistic locking: a writer says which revision it
-- saw, and a stale one is refused with the current row) and sends the row's service and new
-- revision on NOTIFY `opsdeck_traffic` when its transaction commits, so every router reloads
-- within milliseconds. A service without a row has no policy: every healthy instance of any
-- version shares its traffic.

CREATE TABLE traffic_policies (
    service_id         BIGINT PRIMARY KEY REFERENCES services (id) ON DELETE CASCADE,
    revision           BIGINT NOT NULL DEFAULT 1 CHECK (revision >= 1),
    -- [{"version": "v1", "percent": 90}, {"version": "v2", "percent": 10}]: whole percentages per
    -- version label, summing to 100 (checked by app::model::traffic::TrafficChange::check).
    weights            JSONB NOT NULL DEFAULT '[]'::jsonb CHECK (jsonb_typeof(weights) = 'array'),
    -- Sticky canary: requests carrying this header (or cookie) with the same value always get
    -- the same version, as long as the weights don't change.
    sticky_header      TEXT CHECK (sticky_header ~ '^[A-Za-z0-9-]{1,64}$'),
    sticky_cookie      TEXT CHECK (sticky_cookie ~ '^[A-Za-z0-9_.-]{1,64}$'),
    -- Routing: requests whose Host (without port) equals route_host and/or whose path starts with
    -- route_path_prefix go to this service. Neither set: Host equal to the service's name, or
    -- starting with "<name>.", routes here.
    route_host         TEXT CHECK (length(route_host) BETWEEN 1 AND 253),
    route_path_prefix  TEXT CHECK (route_path_prefix LIKE '/%'),
    -- Whether the prefix is removed before the request goes upstream.
    strip_prefix       BOOLEAN NOT NULL DEFAULT false,
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Who made the change (the audit row says more), e.g. "user alice" or "release 12".
    updated_by         TEXT NOT NULL DEFAULT 'system'
);

CREATE FUNCTION traffic_policies_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('opsdeck_traffic', json_build_object('service_id', NEW.service_id, 'revision', NEW.revision)::text);
    RETURN NULL;
END
$$;
CREATE TRIGGER traffic_policies_notify AFTER INSERT OR UPDATE ON traffic_policies
    FOR EACH ROW EXECUTE FUNCTION traffic_policies_notify();

-- Removing a service removes its row (cascade); tell the routers too.
CREATE FUNCTION traffic_policies_notify_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('opsdeck_traffic', json_build_object('service_id', OLD.service_id, 'revision', 0)::text);
    RETURN NULL;
END
$$;
CREATE TRIGGER traffic_policies_notify_delete AFTER DELETE ON traffic_policies
    FOR EACH ROW EXECUTE FUNCTION traffic_policies_notify_delete();
