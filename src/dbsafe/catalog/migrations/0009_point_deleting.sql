-- A point dbsafe is deleting: set just before its manifest is removed, so that a listing
-- which finds the row without its manifest (a deletion that died between the two) drops it
-- quietly, while a manifest that vanished otherwise raises an alert. NULL for every other
-- point. Comments here must not contain semicolons (the migration runner splits on them).
ALTER TABLE recovery_points ADD COLUMN deleting TEXT;
