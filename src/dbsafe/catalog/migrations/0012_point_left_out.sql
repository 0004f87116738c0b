-- The databases a point lists but does not hold (a backup taken with --db, or of the
-- protected databases only): the JSON list of their names, from the manifest's "databases"
-- entries whose "included" is false. A database a point does not list at all did not exist
-- when it was taken, so a differential based on it copies that database whole and the
-- point stays a base for it. NULL for points made before it existed: every database not in
-- "databases" then counts as left out. Comments here must not contain semicolons.
ALTER TABLE recovery_points ADD COLUMN left_out TEXT;
