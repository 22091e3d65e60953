-- Identity, access and audit: who may see and who may press, and a record of every press.
--
-- Roles and scopes are TEXT with CHECK constraints rather than enum types, so that a later
-- release can add a value with the expand/contract discipline (widen the CHECK first).

CREATE TABLE users (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username        TEXT NOT NULL UNIQUE CHECK (username ~ '^[a-z0-9][a-z0-9._-]{0,62}$'),
    display_name    TEXT NOT NULL CHECK (length(display_name) BETWEEN 1 AND 200),
    role            TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    -- argon2id in PHC string format; the password itself is never stored.
    password_hash   TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    disabled_at     TIMESTAMPTZ
);

-- Browser sessions live here, not in memory, so logout and revocation work across replicas.
CREATE TABLE sessions (
    -- SHA-256 of the cookie value: a database leak does not leak usable sessions.
    id_hash         BYTEA PRIMARY KEY,
    user_id         BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_token      TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Absolute expiry; idle expiry is last_seen_at + the configured idle time.
    expires_at      TIMESTAMPTZ NOT NULL,
    source_address  TEXT,
    user_agent      TEXT
);
CREATE INDEX sessions_user_id ON sessions (user_id);

CREATE TABLE api_tokens (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name            TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    -- The first characters of the token, shown in lists so people can tell tokens apart.
    prefix          TEXT NOT NULL,
    -- SHA-256 of the token (tokens are 256 random bits, so a fast hash is enough).
    secret_hash     BYTEA NOT NULL UNIQUE,
    scopes          TEXT[] NOT NULL CHECK (
                        cardinality(scopes) > 0
                        AND scopes <@ ARRAY['ingest', 'read', 'operate', 'admin']::TEXT[]),
    created_by      BIGINT REFERENCES users (id) ON DELETE SET NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at      TIMESTAMPTZ,
    last_used_at    TIMESTAMPTZ,
    revoked_at      TIMESTAMPTZ
);

-- The audit log: append-only, enforced here (triggers refuse UPDATE, DELETE and TRUNCATE for
-- every role), not only in the application.
CREATE TABLE audit_log (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at              TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    actor_kind      TEXT NOT NULL CHECK (actor_kind IN ('user', 'token', 'anonymous', 'system')),
    actor_id        BIGINT,
    actor_name      TEXT NOT NULL,
    action          TEXT NOT NULL,
    target          TEXT,
    before          JSONB,
    after           JSONB,
    reason          TEXT,
    outcome         TEXT NOT NULL CHECK (outcome IN ('success', 'denied', 'failed')),
    detail          TEXT,
    request_id      TEXT,
    source_address  TEXT
);
CREATE INDEX audit_log_at ON audit_log (at DESC, id DESC);
CREATE INDEX audit_log_actor ON audit_log (actor_name, at DESC);
CREATE INDEX audit_log_action ON audit_log (action, at DESC);
-- Login rate limiting counts recent failures per account and per address.
CREATE INDEX audit_log_failed_logins_by_target ON audit_log (target, at) WHERE action = 'auth.login' AND outcome <> 'success';
CREATE INDEX audit_log_failed_logins_by_source ON audit_log (source_address, at) WHERE action = 'auth.login' AND outcome <> 'success';

CREATE FUNCTION audit_log_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER audit_log_no_update_or_delete
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_is_append_only();

CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_is_append_only();

REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM PUBLIC;
