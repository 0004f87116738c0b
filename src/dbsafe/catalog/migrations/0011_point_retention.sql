-- The retention a point was given when its backup committed: the retention settings of the
-- policy in force then, frozen (the JSON of the manifest's "retention", docs/repository-
-- format.md). An immutable vault computes how long it keeps the point from this, never
-- from today's editable policy. NULL for points made before it existed (they keep the rule
-- of their instance's current policy). Comments here must not contain semicolons.
ALTER TABLE recovery_points ADD COLUMN retention TEXT;
