"""The SQLite catalog (WAL mode): one file beside the repository, migrated on open.

Migrations are the numbered ``migrations/NNNN_*.sql`` scripts; ``PRAGMA user_version`` holds
the last one applied, and each is applied in its own transaction.
"""

from __future__ import annotations

import sqlite3
import threading
from importlib import resources
from pathlib import Path

_MIGRATIONS = resources.files("dbsafe.catalog") / "migrations"


def _migrations() -> list[tuple[int, str]]:
    found = []
    for entry in _MIGRATIONS.iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.read_text()))
    return sorted(found)


class SqliteCatalog:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30,
                                   isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._migrate()

    def _migrate(self) -> None:
        with self._lock:
            current = self._db.execute("PRAGMA user_version").fetchone()[0]
            for number, script in _migrations():
                if number <= current:
                    continue
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    for statement in script.split(";"):
                        if statement.strip():
                            self._db.execute(statement)
                    self._db.execute(f"PRAGMA user_version={number}")
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise

    def close(self) -> None:
        self._db.close()

    def _all(self, sql: str, *args: object) -> list[dict]:
        with self._lock:
            return [dict(r) for r in self._db.execute(sql, args).fetchall()]

    def _one(self, sql: str, *args: object) -> dict | None:
        rows = self._all(sql, *args)
        return rows[0] if rows else None

    def _run(self, sql: str, *args: object) -> sqlite3.Cursor:
        with self._lock:
            return self._db.execute(sql, args)

    # vault -------------------------------------------------------------------------------
    def record_vault(self, vault_id: str, path: str, region: str | None, created: str) -> None:
        self._run("INSERT OR IGNORE INTO vaults VALUES (?, ?, ?, ?)", vault_id, path, region,
                  created)

    # servers -----------------------------------------------------------------------------
    def add_server(self, name: str, host: str, region: str | None, instance: dict) -> int:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cur = self._db.execute(
                    "INSERT INTO servers (name, host, region, created) "
                    "VALUES (?, ?, ?, datetime('now'))", (name, host, region))
                server_id = cur.lastrowid
                cols = ", ".join(instance)
                marks = ", ".join("?" for _ in instance)
                cur = self._db.execute(
                    f"INSERT INTO instances (server_id, {cols}) VALUES (?, {marks})",
                    (server_id, *instance.values()))
                self._db.execute("COMMIT")
                return int(cur.lastrowid)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    _SERVER_SELECT = (
        "SELECT s.name, s.host AS server_host, s.region, s.created, i.id AS instance_id, "
        "i.pgdata, i.port, i.host, i.bin_dir, i.socket_dir, i.pg_version, "
        "i.system_identifier, i.recovery_model, i.data_checksums, i.wal_segment_size "
        "FROM servers s JOIN instances i ON i.server_id = s.id")

    def get_server(self, name: str) -> dict | None:
        return self._one(self._SERVER_SELECT + " WHERE s.name = ?", name)

    def list_servers(self) -> list[dict]:
        return self._all(self._SERVER_SELECT + " ORDER BY s.name")

    def remove_server(self, name: str) -> bool:
        return self._run("DELETE FROM servers WHERE name = ?", name).rowcount > 0

    def update_instance(self, instance_id: int, **fields: object) -> None:
        sets = ", ".join(f"{k} = ?" for k in fields)
        self._run(f"UPDATE instances SET {sets} WHERE id = ?", *fields.values(), instance_id)

    # databases ---------------------------------------------------------------------------
    def replace_databases(self, instance_id: int, databases: list[dict]) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("DELETE FROM databases WHERE instance_id = ?", (instance_id,))
                self._db.executemany(
                    "INSERT INTO databases (instance_id, name, oid, size_bytes, file_count, "
                    "read_only, kind, discovered) VALUES (?, ?, ?, ?, ?, ?, ?, datetime('now'))",
                    [(instance_id, d["name"], d["oid"], d["size_bytes"], d["file_count"],
                      int(d["read_only"]), d["kind"]) for d in databases])
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def list_databases(self, instance_id: int) -> list[dict]:
        return self._all("SELECT name, oid, size_bytes, file_count, read_only, kind, discovered "
                         "FROM databases WHERE instance_id = ? ORDER BY name", instance_id)

    # points ------------------------------------------------------------------------------
    _POINT_COLS = ("point_id", "type", "copy_only", "start_time", "end_time", "start_lsn",
                   "stop_lsn", "timeline", "bytes_read", "bytes_stored", "corrupt_pages",
                   "databases", "base_point")

    def add_point(self, instance_id: int, point: dict) -> None:
        values = [point.get(c) for c in self._POINT_COLS]
        cols = ", ".join(self._POINT_COLS)
        marks = ", ".join("?" for _ in self._POINT_COLS)
        self._run(f"INSERT OR IGNORE INTO recovery_points (instance_id, {cols}) "
                  f"VALUES (?, {marks})", instance_id, *values)

    def list_points(self, instance_id: int) -> list[dict]:
        return self._all("SELECT * FROM recovery_points WHERE instance_id = ? "
                         "ORDER BY start_time, point_id", instance_id)

    def get_point(self, point_id: str) -> dict | None:
        return self._one("SELECT * FROM recovery_points WHERE point_id = ?", point_id)

    # the log chain -----------------------------------------------------------------------
    _WAL_COLS = ("system_identifier", "name", "timeline", "segno", "segment_size", "size",
                 "end_lsn", "first_xact_time", "last_xact_time", "xacts", "restore_points",
                 "mtime", "archived", "server")

    def add_wal_file(self, row: dict) -> None:
        marks = ", ".join("?" for _ in self._WAL_COLS)
        self._run(f"INSERT OR REPLACE INTO wal_files ({', '.join(self._WAL_COLS)}) "
                  f"VALUES ({marks})", *(row.get(c) for c in self._WAL_COLS))

    def list_wal_files(self, system_identifier: str) -> list[dict]:
        return self._all("SELECT * FROM wal_files WHERE system_identifier = ? "
                         "ORDER BY timeline, segno, name", system_identifier)

    def wal_file_names(self, system_identifier: str) -> set[str]:
        return {r["name"] for r in self._all(
            "SELECT name FROM wal_files WHERE system_identifier = ?", system_identifier)}

    # protection --------------------------------------------------------------------------
    def set_protected(self, instance_id: int, names: list[str]) -> None:
        """Replace the protected databases of an instance."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("DELETE FROM protected_databases WHERE instance_id = ? AND "
                                 f"name NOT IN ({', '.join('?' for _ in names)})",
                                 (instance_id, *names))
                self._db.executemany(
                    "INSERT OR IGNORE INTO protected_databases (instance_id, name, since) "
                    "VALUES (?, ?, datetime('now'))", [(instance_id, n) for n in names])
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def list_protected(self, instance_id: int) -> list[str]:
        return [r["name"] for r in self._all(
            "SELECT name FROM protected_databases WHERE instance_id = ? ORDER BY name",
            instance_id)]

    # jobs --------------------------------------------------------------------------------
    def create_job(self, job_id: str, type: str, server: str | None, pid: int,
                   start_time: str) -> None:
        self._run("INSERT INTO jobs (id, type, server, state, start_time, pid) "
                  "VALUES (?, ?, ?, 'running', ?, ?)", job_id, type, server, start_time, pid)

    def update_job(self, job_id: str, **fields: object) -> None:
        sets = ", ".join(f"{k} = ?" for k in fields)
        self._run(f"UPDATE jobs SET {sets} WHERE id = ?", *fields.values(), job_id)

    def get_job(self, job_id: str) -> dict | None:
        return self._one("SELECT * FROM jobs WHERE id = ?", job_id)

    def list_jobs(self, limit: int = 100) -> list[dict]:
        return self._all("SELECT * FROM jobs ORDER BY start_time DESC, id DESC LIMIT ?", limit)

    # deleting points and pruning the log chain (issue 5: services/prune.py) --------------
    def delete_point(self, point_id: str) -> bool:
        return self._run("DELETE FROM recovery_points WHERE point_id = ?", point_id).rowcount > 0

    def delete_wal_files(self, system_identifier: str, names: list[str]) -> int:
        """Remove the rows of these WAL files, in one transaction; returns how many."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cur = self._db.executemany(
                    "DELETE FROM wal_files WHERE system_identifier = ? AND name = ?",
                    [(system_identifier, n) for n in names])
                self._db.execute("COMMIT")
                return cur.rowcount
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
