-- The service layer: policies, the scheduler's memory, alerts, drills, job
-- triggers and cancellation. Comments here must not contain semicolons (the migration
-- runner splits statements on them).

-- A policy's body is the JSON of dbsafe.policy.model.Policy.to_dict().
CREATE TABLE policies (
    name     TEXT PRIMARY KEY,
    body     TEXT NOT NULL,
    created  TEXT NOT NULL,
    updated  TEXT NOT NULL
);

-- A protected item is a database of an instance. state: protected, stopped (protection
-- stopped, data retained), source-gone (dropped on the server), inconsistent-policy
-- (reconfiguration after a policy change failed: state_reason says why).
ALTER TABLE protected_databases ADD COLUMN policy TEXT;
ALTER TABLE protected_databases ADD COLUMN state TEXT NOT NULL DEFAULT 'protected';
ALTER TABLE protected_databases ADD COLUMN state_reason TEXT;
ALTER TABLE protected_databases ADD COLUMN oid INTEGER;
ALTER TABLE protected_databases ADD COLUMN warning TEXT;

-- Auto-protection: every existing and future database of the instance, with this policy.
ALTER TABLE instances ADD COLUMN auto_protect_policy TEXT;
-- Why the next differential or log backup must be a full (overwrite restore, model change).
ALTER TABLE instances ADD COLUMN needs_full TEXT;
ALTER TABLE instances ADD COLUMN max_concurrent INTEGER;
ALTER TABLE instances ADD COLUMN discovered TEXT;

-- The scheduler's memory: the last schedule slot handled per instance, policy and kind
-- (full, diff, log, drill, discover), the job that ran it and how many times it was tried.
-- A restart neither loses nor repeats a run.
CREATE TABLE schedule_state (
    instance_id INTEGER NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
    policy      TEXT NOT NULL,
    kind        TEXT NOT NULL,
    last_slot   TEXT NOT NULL,
    job_id      TEXT,
    attempts    INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (instance_id, policy, kind)
);

-- Alerts: one row per open condition (kind + server + item), counted while it repeats.
CREATE TABLE alerts (
    id        INTEGER PRIMARY KEY,
    kind      TEXT NOT NULL,
    severity  TEXT NOT NULL,
    server    TEXT,
    item      TEXT,
    message   TEXT NOT NULL,
    details   TEXT,
    job_id    TEXT,
    raised    TEXT NOT NULL,
    last_seen TEXT NOT NULL,
    count     INTEGER NOT NULL DEFAULT 1,
    state     TEXT NOT NULL DEFAULT 'active',
    resolved  TEXT
);
CREATE INDEX alerts_open ON alerts (state, kind, server, item);

-- Where alerts are delivered besides the log and the catalog: webhook (HTTP POST JSON) or
-- email (SMTP). options is JSON (smtp host, port, sender, ...).
CREATE TABLE alert_channels (
    id          INTEGER PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('webhook', 'email')),
    target      TEXT NOT NULL,
    options     TEXT,
    on_success  INTEGER NOT NULL DEFAULT 0,
    created     TEXT NOT NULL
);

-- Restore drills: the latest point restored into a scratch cluster and checked.
CREATE TABLE drills (
    id          TEXT PRIMARY KEY,
    server      TEXT NOT NULL,
    point_id    TEXT,
    started     TEXT NOT NULL,
    finished    TEXT,
    state       TEXT NOT NULL,
    rto_seconds REAL,
    rpo_seconds REAL,
    checks      TEXT,
    error_code  TEXT,
    error_message TEXT
);

-- Per-table row counts taken at backup time (JSON), checked by drills.
ALTER TABLE recovery_points ADD COLUMN table_counts TEXT;

-- Jobs: what started them, which items and backup type, warnings, cancellation.
ALTER TABLE jobs ADD COLUMN trigger TEXT NOT NULL DEFAULT 'on-demand';
ALTER TABLE jobs ADD COLUMN backup_type TEXT;
ALTER TABLE jobs ADD COLUMN items TEXT;
ALTER TABLE jobs ADD COLUMN warnings TEXT;
ALTER TABLE jobs ADD COLUMN reason TEXT;
ALTER TABLE jobs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
