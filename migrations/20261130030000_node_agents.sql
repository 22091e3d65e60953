-- Node agents (`opsdeck agent`) announce themselves and report a node's CPU, memory, disk and
-- network every few seconds. The last time an agent was heard from, and how often it promised
-- to report, tell the health model whether a node itself is reachable: a node whose agent has
-- gone silent is down, and that is the one root cause of its instances' failures.

ALTER TABLE nodes
    ADD COLUMN agent_seen_at TIMESTAMPTZ,
    ADD COLUMN agent_every_ms INTEGER CHECK (agent_every_ms BETWEEN 1000 AND 3600000);
