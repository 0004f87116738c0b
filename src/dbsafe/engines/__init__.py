"""Database engines: each knows its database (discover, back up, restore) and nothing of the
vault or of policies. Services join an engine to the vault."""
