CREATE TABLE vaults (
    vault_id   TEXT PRIMARY KEY,
    path       TEXT NOT NULL,
    region     TEXT,
    created    TEXT NOT NULL
);

CREATE TABLE servers (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    host       TEXT NOT NULL,
    region     TEXT,
    created    TEXT NOT NULL
);

CREATE TABLE instances (
    id                 INTEGER PRIMARY KEY,
    server_id          INTEGER NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    pgdata             TEXT NOT NULL,
    port               INTEGER NOT NULL,
    host               TEXT,
    bin_dir            TEXT NOT NULL,
    socket_dir         TEXT,
    pg_version         INTEGER NOT NULL,
    system_identifier  TEXT NOT NULL,
    recovery_model     TEXT,
    data_checksums     INTEGER NOT NULL DEFAULT 0,
    UNIQUE (server_id, pgdata)
);

CREATE TABLE databases (
    id           INTEGER PRIMARY KEY,
    instance_id  INTEGER NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    oid          INTEGER NOT NULL,
    size_bytes   INTEGER NOT NULL,
    file_count   INTEGER NOT NULL,
    read_only    INTEGER NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('system', 'user')),
    discovered   TEXT NOT NULL,
    UNIQUE (instance_id, oid)
);

CREATE TABLE recovery_points (
    point_id     TEXT PRIMARY KEY,
    instance_id  INTEGER NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
    type         TEXT NOT NULL,
    copy_only    INTEGER NOT NULL,
    start_time   TEXT NOT NULL,
    end_time     TEXT NOT NULL,
    start_lsn    TEXT NOT NULL,
    stop_lsn     TEXT NOT NULL,
    timeline     INTEGER NOT NULL,
    bytes_read   INTEGER NOT NULL,
    bytes_stored INTEGER NOT NULL,
    corrupt_pages INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX recovery_points_instance ON recovery_points (instance_id, start_time);

CREATE TABLE jobs (
    id           TEXT PRIMARY KEY,
    type         TEXT NOT NULL,
    server       TEXT,
    state        TEXT NOT NULL,
    bytes_done   INTEGER NOT NULL DEFAULT 0,
    bytes_total  INTEGER NOT NULL DEFAULT 0,
    start_time   TEXT NOT NULL,
    end_time     TEXT,
    pid          INTEGER,
    error_code   TEXT,
    error_message TEXT,
    result       TEXT
);
CREATE INDEX jobs_start ON jobs (start_time);
