-- A fleet: agents on other hosts, their one-time registration tokens, the servers each
-- agent owns, and jobs queued for an agent (docs/fleet.md).
-- Comments here must not contain semicolons (the migration runner splits on them).

-- One-time registration tokens: the secret part is kept only as its SHA-256 (256 random
-- bits). host: the host name it is for (NULL: any). used: when it was traded, by which agent.
CREATE TABLE agent_tokens (
    id          TEXT PRIMARY KEY,
    secret_hash TEXT NOT NULL,
    host        TEXT,
    created     TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    expires     TEXT NOT NULL,
    used        TEXT,
    agent_id    TEXT
);

-- Agents: one per database host. The credential's secret is kept only as its SHA-256.
-- last_contact: its newest call. revoked: when it was cut off (NULL: active).
CREATE TABLE agents (
    id           TEXT PRIMARY KEY,
    host         TEXT NOT NULL,
    secret_hash  TEXT NOT NULL,
    version      TEXT,
    address      TEXT,
    registered   TEXT NOT NULL,
    last_contact TEXT,
    revoked      TEXT
);

-- The agent that owns a server (NULL: the control plane's own host, the one-machine case).
ALTER TABLE servers ADD COLUMN agent_id TEXT;

-- Jobs queued for an agent (state 'queued', then 'running' once it claims them): which
-- agent, the request it carries (JSON), and the time of the agent's last report on it.
ALTER TABLE jobs ADD COLUMN agent_id TEXT;
ALTER TABLE jobs ADD COLUMN request TEXT;
ALTER TABLE jobs ADD COLUMN reported TEXT;
CREATE INDEX jobs_queue ON jobs (agent_id, state, start_time);

-- What the agent of a replica set node's host last saw of it (docs/fleet.md): its role,
-- timeline, health and replay position, and when. The control plane chooses the node of
-- each backup type from these for a node of another host.
CREATE TABLE node_reports (
    server      TEXT PRIMARY KEY REFERENCES servers(name) ON DELETE CASCADE,
    role        TEXT NOT NULL,
    timeline    INTEGER,
    healthy     INTEGER NOT NULL,
    reason      TEXT,
    replay_lsn  INTEGER NOT NULL DEFAULT 0,
    reported    TEXT NOT NULL
);
