"""Defaults the CLI names in its options and the services use. They live here so that the
CLI can show them without importing the services, which load the vault, crypto and storage
code: every `dbsafe` call would pay for that even to print its help."""

BACKUP_TYPES = ("full", "copy-only", "diff")
COMPRESS_LEVEL = 1
LOG_WAIT_SECONDS = 300
