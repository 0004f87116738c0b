-- Archived WAL files (the log chain), keyed by the cluster lineage, not by server: a
-- primary and its standbys share one chain. Rebuildable from the vault's wal/ records.
CREATE TABLE wal_files (
    system_identifier TEXT NOT NULL,
    name              TEXT NOT NULL,
    timeline          INTEGER,
    segno             INTEGER,
    segment_size      INTEGER,
    size              INTEGER NOT NULL,
    end_lsn           TEXT,
    first_xact_time   TEXT,
    last_xact_time    TEXT,
    xacts             INTEGER,
    restore_points    TEXT,
    mtime             REAL NOT NULL,
    archived          TEXT NOT NULL,
    server            TEXT,
    PRIMARY KEY (system_identifier, name)
);
CREATE INDEX wal_files_segments ON wal_files (system_identifier, timeline, segno);

-- The protected items: databases of an instance (a backup run covers these, plus the
-- instance-wide files).
CREATE TABLE protected_databases (
    instance_id INTEGER NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    since       TEXT NOT NULL,
    PRIMARY KEY (instance_id, name)
);

ALTER TABLE recovery_points ADD COLUMN databases TEXT;
ALTER TABLE recovery_points ADD COLUMN base_point TEXT;
ALTER TABLE instances ADD COLUMN wal_segment_size INTEGER;
