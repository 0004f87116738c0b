-- Access for the REST API and the portal: who may call dbsafe, and what they changed.
-- Comments here must not contain semicolons (the migration runner splits on them).

-- API tokens: the secret part is kept only as its SHA-256 (a token is 256 random bits, so a
-- fast hash is enough), shown once at creation. role: reader, operator, contributor.
CREATE TABLE api_tokens (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    role        TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    created     TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    last_used   TEXT,
    revoked     TEXT
);

-- Portal users: the password is kept as an argon2id hash.
CREATE TABLE users (
    name          TEXT PRIMARY KEY,
    role          TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created       TEXT NOT NULL
);

-- Portal sessions: the cookie's value is kept only as its SHA-256, with the CSRF token that
-- the session's forms must carry. A session ends at expires (idle) or at absolute_expiry.
CREATE TABLE sessions (
    id_hash         TEXT PRIMARY KEY,
    principal       TEXT NOT NULL,
    role            TEXT NOT NULL,
    csrf            TEXT NOT NULL,
    created         TEXT NOT NULL,
    expires         TEXT NOT NULL,
    absolute_expiry TEXT NOT NULL
);

-- Every change made through the API, the portal or the CLI: who, what, when, from where.
CREATE TABLE audit_log (
    id       INTEGER PRIMARY KEY,
    at       TEXT NOT NULL,
    actor    TEXT NOT NULL,
    role     TEXT,
    source   TEXT NOT NULL,
    action   TEXT NOT NULL,
    target   TEXT,
    outcome  TEXT NOT NULL,
    detail   TEXT
);
CREATE INDEX audit_log_at ON audit_log (at);

-- The portal's overview asks for each instance's newest point of each type.
CREATE INDEX recovery_points_newest ON recovery_points (instance_id, type, end_time);
-- and for the newest job of each server.
CREATE INDEX jobs_server ON jobs (server, start_time);
