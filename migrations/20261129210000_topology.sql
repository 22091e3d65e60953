-- Topology and service discovery: clusters contain nodes; services have versions; instances
-- are where a version of a service runs right now (host:port on a node), kept alive by
-- heartbeats and judged by active health checks.
--
-- Names follow one rule everywhere (lower-case letters, digits, '.', '_', '-', 1-63 chars) so
-- they are safe in URLs, metric tags and log fields.

CREATE TABLE clusters (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,62}$'),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE nodes (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    cluster_id    BIGINT NOT NULL REFERENCES clusters (id) ON DELETE CASCADE,
    name          TEXT NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,62}$'),
    -- The address the node was last seen at (an instance's host, or the agent's).
    address       TEXT,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (cluster_id, name)
);

CREATE TABLE services (
    id                  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name                TEXT NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,62}$'),
    health_check_path   TEXT NOT NULL DEFAULT '/healthz' CHECK (health_check_path LIKE '/%'),
    check_interval_ms   INTEGER NOT NULL DEFAULT 5000 CHECK (check_interval_ms BETWEEN 500 AND 3600000),
    check_timeout_ms    INTEGER NOT NULL DEFAULT 2000 CHECK (check_timeout_ms BETWEEN 50 AND 60000),
    -- Consecutive failed checks that mark an instance down, and successes that bring it back.
    fall                INTEGER NOT NULL DEFAULT 3 CHECK (fall BETWEEN 1 AND 100),
    rise                INTEGER NOT NULL DEFAULT 2 CHECK (rise BETWEEN 1 AND 100),
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE service_versions (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    service_id  BIGINT NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    label       TEXT NOT NULL CHECK (label ~ '^[A-Za-z0-9][A-Za-z0-9._+-]{0,62}$'),
    colour      TEXT CHECK (colour IN ('blue', 'green')),
    artifact    TEXT,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (service_id, label)
);

CREATE TABLE instances (
    -- Handed to the registrant, which uses it for heartbeats and deregistration.
    id                    UUID PRIMARY KEY,
    service_id            BIGINT NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    version_id            BIGINT NOT NULL REFERENCES service_versions (id) ON DELETE CASCADE,
    node_id               BIGINT NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
    host                  TEXT NOT NULL CHECK (length(host) BETWEEN 1 AND 253),
    port                  INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535),
    -- Overrides the service's path for this instance, when set.
    health_check_path     TEXT CHECK (health_check_path LIKE '/%'),
    metadata              JSONB NOT NULL DEFAULT '{}'::jsonb,
    ttl_ms                INTEGER NOT NULL CHECK (ttl_ms BETWEEN 1000 AND 3600000),
    registered_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_heartbeat_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- unknown until the first checks; healthy/unhealthy by the checker; expired when the
    -- heartbeats stopped for longer than the TTL.
    health                TEXT NOT NULL DEFAULT 'unknown' CHECK (health IN ('unknown', 'healthy', 'unhealthy', 'expired')),
    health_reason         TEXT,
    health_changed_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    consecutive_successes INTEGER NOT NULL DEFAULT 0,
    consecutive_failures  INTEGER NOT NULL DEFAULT 0,
    -- One live registration per address.
    UNIQUE (host, port)
);
CREATE INDEX instances_service ON instances (service_id, health);
CREATE INDEX instances_node ON instances (node_id);
CREATE INDEX instances_heartbeat ON instances (last_heartbeat_at);
