-- Soft delete. Comments here must not contain semicolons (the migration runner
-- splits statements on them).

-- A soft-deleted point keeps its row, mirroring its marker deleted/<point id> in the
-- repository (the truth: listings reconcile the two). Both are NULL for a live point.
ALTER TABLE recovery_points ADD COLUMN deleted_at TEXT;
ALTER TABLE recovery_points ADD COLUMN purge_after TEXT;
