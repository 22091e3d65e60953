-- Rolling releases: the progress of a roll, one step per node that ran the stable version when
-- it started ({"ready_timeout_seconds", "steps": [{"node", "replaces", "state", "started_at",
-- "finished_at", "instance", "detail"}]}). Expand only: a nullable column older code ignores.
ALTER TABLE releases ADD COLUMN rolling JSONB CHECK (rolling IS NULL OR jsonb_typeof(rolling) = 'object');
