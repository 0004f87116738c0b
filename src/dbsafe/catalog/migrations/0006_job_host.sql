-- The host a job runs on (a catalog shared by several hosts). A job's pid says whether it
-- still runs only on its own host: with a catalog shared by agents on several hosts, a job
-- of another host is taken as running (NULL: a job recorded before this column, on this
-- host).
ALTER TABLE jobs ADD COLUMN host TEXT;
