"""The PostgreSQL engine: find a cluster, discover its databases, take a consistent physical
backup (pg_backup_start/stop in one session), and lay a backup out as a data directory."""

SUPPORTED_MAJORS = (12, 13, 14, 15, 16, 17, 18)
