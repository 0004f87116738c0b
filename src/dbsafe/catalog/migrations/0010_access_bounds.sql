-- API and access: a portal session opened by pasting an API token records the
-- token, so revoking the token ends the session. Comments here must not contain semicolons
-- (the migration runner splits on them).
ALTER TABLE sessions ADD COLUMN token_id TEXT;
-- Sessions opened with a token before this cannot be traced to it: they end now (their users
-- paste the token again).
DELETE FROM sessions WHERE principal LIKE 'token:%';

-- Browsers that logged in as a user before (a random cookie, kept here as its SHA-256): the
-- per-account login throttle does not apply to them, so failures sent from elsewhere cannot
-- lock a user out of the browser they use.
CREATE TABLE login_devices (
    id_hash   TEXT PRIMARY KEY,
    user_name TEXT NOT NULL,
    created   TEXT NOT NULL
);
