-- What each protected item of a point takes, from its manifest's "stats.usage"
-- (docs/repository-format.md, Manifests): JSON {"databases": {name: {"bytes", "stored"}},
-- "instance": {"bytes", "stored"}}. NULL for log points and for points taken before it
-- existed: reports count their bytes for the instance. Comments here must not contain
-- semicolons.
ALTER TABLE recovery_points ADD COLUMN item_usage TEXT;
