-- Replica sets: a primary and its streaming standbys, protected once. Comments
-- here must not contain semicolons (the migration runner splits statements on them).

-- A set has its own entry in servers (kind 'replica-set', the same name space as servers):
-- its instance row holds the set's protected items, points, policy and recovery model, and
-- mirrors the endpoint of the node last seen as primary. It is made with the first node.
ALTER TABLE servers ADD COLUMN kind TEXT NOT NULL DEFAULT 'server';

CREATE TABLE replica_sets (
    name        TEXT PRIMARY KEY,
    preference  TEXT NOT NULL
                CHECK (preference IN ('primary', 'secondary-only', 'secondary', 'none')),
    created     TEXT NOT NULL
);

-- The nodes: registered servers, each in at most one set. role, healthy, reason, timeline
-- and checked are what the last look at the node found (dbsafe notices role changes).
CREATE TABLE replica_set_nodes (
    replica_set TEXT NOT NULL REFERENCES replica_sets(name) ON DELETE CASCADE,
    server      TEXT NOT NULL UNIQUE REFERENCES servers(name) ON DELETE CASCADE,
    role        TEXT,
    healthy     INTEGER,
    reason      TEXT,
    timeline    INTEGER,
    checked     TEXT,
    added       TEXT NOT NULL,
    PRIMARY KEY (replica_set, server)
);

-- Which node of a replica set took a backup.
ALTER TABLE jobs ADD COLUMN node TEXT;
