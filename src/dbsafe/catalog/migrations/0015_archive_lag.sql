-- The archiving lag of a server as its last health check measured it (bytes of WAL written
-- but not in the vault yet), and when: what /metrics shows "where known" without opening a
-- connection to the cluster at every scrape (docs/fleet.md, *Metrics*). NULL: never measured
-- (a SIMPLE server, a server of another host, no check run yet).
-- Comments here must not contain semicolons (the migration runner splits on them).
ALTER TABLE instances ADD COLUMN archive_lag_bytes INTEGER;
ALTER TABLE instances ADD COLUMN archive_lag_checked TEXT;
