"""Things every layer may use: the error registry and small helpers. Imports nothing of dbsafe."""
