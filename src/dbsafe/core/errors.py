"""The one registry of dbsafe errors.

Each error has a stable code (scripts and the API match on it), a process exit status, an
HTTP status for the API, and a message that says what failed and what to do. Raise
``DbsafeError(CODE, **details)``; the CLI prints one line, never a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ErrorSpec:
    code: str
    exit_status: int
    http_status: int
    template: str


_SPECS = [
    # usage / configuration: exit 2
    ErrorSpec("vault.not_initialised", 2, 409,
              "no vault at {path}; create one with `dbsafe vault init` "
              "(or point --vault / DBSAFE_HOME at an existing vault)"),
    ErrorSpec("vault.exists", 2, 409,
              "a vault already exists at {path}; use it, or choose another --vault folder"),
    ErrorSpec("vault.format_unsupported", 2, 409,
              "the vault at {path} has format {found}; this dbsafe reads format {expected}"),
    ErrorSpec("region.unknown", 2, 400, "unknown region {region!r}; valid regions: {valid}"),
    ErrorSpec("server.unknown", 2, 404,
              "no server named {name!r} in this vault; list them with `dbsafe server list` "
              "or register it with `dbsafe server add`"),
    ErrorSpec("server.exists", 2, 409,
              "a server named {name!r} is already registered; pick another name or "
              "remove it with `dbsafe server remove {name}`"),
    ErrorSpec("server.pgdata_missing", 2, 400,
              "{pgdata} is not a PostgreSQL data directory ({reason}); give the folder that "
              "holds PG_VERSION and global/"),
    ErrorSpec("server.version_unsupported", 2, 400,
              "PostgreSQL {version} is not supported; dbsafe supports major versions {supported}"),
    ErrorSpec("server.not_running", 3, 409,
              "PostgreSQL for {pgdata} is not running ({reason}); start it "
              "(pg_ctl start -D {pgdata}) and try again"),
    ErrorSpec("server.wrong_port", 2, 400,
              "the cluster in {pgdata} listens on port {actual}, not {given}; "
              "use --port {actual}"),
    ErrorSpec("server.connect_failed", 3, 502,
              "cannot connect to PostgreSQL on port {port}: {reason}; check --host/--port, "
              "and that pg_hba.conf lets user {user!r} in (or set PGUSER/PGPASSWORD)"),
    ErrorSpec("server.not_superuser", 3, 403,
              "user {user!r} may not run backups; connect as a superuser or a role "
              "with pg_read_all_settings and EXECUTE on pg_backup_start/pg_backup_stop"),
    ErrorSpec("server.system_changed", 3, 409,
              "the cluster at {pgdata} is not the one registered as {name!r} (system identifier "
              "{found}, expected {expected}); register it under a new name"),
    ErrorSpec("server.wal_level", 3, 409,
              "wal_level is {wal_level}; a backup needs wal_level=replica or logical "
              "(set it in postgresql.conf and restart PostgreSQL)"),
    ErrorSpec("server.no_replication_slot", 3, 409,
              "cannot reserve WAL for the backup: {reason}; a backup holds one temporary "
              "replication slot while it runs: raise max_replication_slots (restart needed) "
              "or free a slot"),
    ErrorSpec("backup.already_running", 4, 409,
              "a {type} backup of {name!r} is already running (job {job_id}); wait for it "
              "or cancel it"),
    ErrorSpec("backup.file_read_failed", 5, 500,
              "could not read {path}: {reason}"),
    ErrorSpec("backup.no_full", 2, 409,
              "a differential needs a full backup of {name} first; take one with "
              "`dbsafe backup {name} --type full`"),
    ErrorSpec("backup.base_unusable", 3, 409,
              "the latest full {base} of {name!r} cannot be the base of a differential: "
              "{reason}; take a new one with `dbsafe backup {name} --type full`"),
    ErrorSpec("point.base_missing", 6, 500,
              "point {point_id} is a differential of full {base}, whose manifest is not in "
              "the vault; it cannot be restored: restore another point "
              "(`dbsafe points {name}`)"),
    ErrorSpec("point.unknown", 2, 404,
              "no recovery point {point_id!r} for {name!r}; list them with `dbsafe points {name}`"),
    ErrorSpec("restore.target_not_empty", 2, 409,
              "restore target {path} is not empty; give an empty or new folder "
              "(dbsafe never overwrites a data directory)"),
    ErrorSpec("restore.tablespace_target", 2, 409,
              "tablespace {oid} would be restored to {path}, which is not empty; map it "
              "elsewhere with --tablespace-map {oid}=DIR"),
    ErrorSpec("restore.owner_unknown", 2, 400,
              "there is no OS user {owner!r} to own the restored files; create it or pass "
              "--owner with an existing user (usually postgres)"),
    ErrorSpec("restore.start_failed", 5, 500,
              "the restored cluster in {pgdata} did not start: {reason}; see {log}"),
    ErrorSpec("restore.port_in_use", 2, 409,
              "port {port} is in use; choose a free port with --port"),
    ErrorSpec("vault.block_missing", 6, 500,
              "block {block_id} of {path} is not in the vault; the point is damaged; "
              "run `dbsafe verify` and take a new full backup"),
    ErrorSpec("vault.block_corrupt", 6, 500,
              "block {block_id} of {path} is corrupt in the vault ({reason}); the point is "
              "damaged; run `dbsafe verify` and take a new full backup"),
    ErrorSpec("vault.object_corrupt", 6, 500,
              "{path} in the vault is corrupt ({reason}); run `dbsafe verify`"),
    ErrorSpec("verify.failed", 6, 500,
              "point {point_id} has {problems} damaged block(s) in {files} file(s)"),
    ErrorSpec("job.unknown", 2, 404, "no job {job_id!r}"),
    ErrorSpec("internal", 70, 500, "internal error: {reason}; please report it with the log"),
]

REGISTRY: dict[str, ErrorSpec] = {s.code: s for s in _SPECS}


class DbsafeError(Exception):
    """An error a user can act on. ``code`` is stable; ``details`` fill the message."""

    def __init__(self, code: str, **details: object) -> None:
        self.spec = REGISTRY[code]
        self.code = code
        self.details = details
        try:
            message = self.spec.template.format(**details)
        except (KeyError, IndexError):
            message = f"{self.spec.template} {details}"
        self.message = message
        super().__init__(f"{code}: {message}")

    @property
    def exit_status(self) -> int:
        return self.spec.exit_status

    def as_dict(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message,
                "details": {k: str(v) for k, v in self.details.items()}}


def errors_markdown() -> str:
    """docs/errors.md, generated from the registry (a test keeps the two equal)."""
    lines = ["# dbsafe error codes", "",
             "Generated from the registry in `src/dbsafe/core/errors.py` "
             "(`errors_markdown()`); a test keeps this page equal to it.",
             "", "| code | exit status | HTTP status | message |", "| --- | --- | --- | --- |"]
    for spec in _SPECS:
        message = spec.template.replace("|", "\\|")
        lines.append(f"| `{spec.code}` | {spec.exit_status} | {spec.http_status} | {message} |")
    return "\n".join(lines) + "\n"
