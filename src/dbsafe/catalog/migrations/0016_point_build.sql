-- How a full was made, from its manifest's "build" (docs/repository-format.md, Synthetic
-- fulls): "read" (every file read) or "synthetic" (built from the previous full and the
-- pages the WAL names). NULL for other points, and for fulls made before it existed (they
-- read every file). Comments here must not contain semicolons.
ALTER TABLE recovery_points ADD COLUMN build TEXT;
