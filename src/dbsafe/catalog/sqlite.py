"""The SQLite catalog (WAL mode): one file beside the repository, migrated on open.

Migrations are the numbered ``migrations/NNNN_*.sql`` scripts; ``PRAGMA user_version`` holds
the last one applied, and each is applied in its own transaction.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable
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

    def set_vault_region(self, vault_id: str, region: str) -> None:
        self._run("UPDATE vaults SET region = ? WHERE vault_id = ?", region, vault_id)

    # servers -----------------------------------------------------------------------------
    def add_server(self, name: str, host: str, region: str | None, instance: dict,
                   kind: str = "server") -> int:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cur = self._db.execute(
                    "INSERT INTO servers (name, host, region, created, kind) "
                    "VALUES (?, ?, ?, datetime('now'), ?)", (name, host, region, kind))
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
        "SELECT s.name, s.host AS server_host, s.region, s.created, s.kind, "
        "i.id AS instance_id, "
        "i.pgdata, i.port, i.host, i.bin_dir, i.socket_dir, i.pg_version, "
        "i.system_identifier, i.recovery_model, i.data_checksums, i.wal_segment_size, "
        "i.auto_protect_policy, i.needs_full, i.max_concurrent, i.discovered, "
        "n.replica_set "
        "FROM servers s JOIN instances i ON i.server_id = s.id "
        "LEFT JOIN replica_set_nodes n ON n.server = s.name")

    def get_server(self, name: str) -> dict | None:
        return self._one(self._SERVER_SELECT + " WHERE s.name = ?", name)

    def list_servers(self) -> list[dict]:
        return self._all(self._SERVER_SELECT + " ORDER BY s.name")

    def remove_server(self, name: str) -> bool:
        return self._run("DELETE FROM servers WHERE name = ?", name).rowcount > 0

    def update_server(self, name: str, **fields: object) -> None:
        sets = ", ".join(f"{k} = ?" for k in fields)
        self._run(f"UPDATE servers SET {sets} WHERE name = ?", *fields.values(), name)

    def update_instance(self, instance_id: int, **fields: object) -> None:
        sets = ", ".join(f"{k} = ?" for k in fields)
        self._run(f"UPDATE instances SET {sets} WHERE id = ?", *fields.values(), instance_id)

    # replica sets ------------------------------------------------------------------------
    def add_replica_set(self, name: str, preference: str) -> None:
        self._run("INSERT INTO replica_sets (name, preference, created) "
                  "VALUES (?, ?, datetime('now'))", name, preference)

    def get_replica_set(self, name: str) -> dict | None:
        return self._one("SELECT * FROM replica_sets WHERE name = ?", name)

    def list_replica_sets(self) -> list[dict]:
        return self._all("SELECT * FROM replica_sets ORDER BY name")

    def update_replica_set(self, name: str, **fields: object) -> None:
        sets = ", ".join(f"{k} = ?" for k in fields)
        self._run(f"UPDATE replica_sets SET {sets} WHERE name = ?", *fields.values(), name)

    def remove_replica_set(self, name: str) -> None:
        """The set, its node memberships and its own server entry (items, points rows)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("DELETE FROM replica_sets WHERE name = ?", (name,))
                self._db.execute("DELETE FROM servers WHERE name = ? AND kind = 'replica-set'",
                                 (name,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def add_node(self, replica_set: str, server: str) -> None:
        self._run("INSERT INTO replica_set_nodes (replica_set, server, added) "
                  "VALUES (?, ?, datetime('now'))", replica_set, server)

    def remove_node(self, replica_set: str, server: str) -> bool:
        return self._run("DELETE FROM replica_set_nodes WHERE replica_set = ? AND server = ?",
                         replica_set, server).rowcount > 0

    def list_nodes(self, replica_set: str) -> list[dict]:
        """The nodes with what was last seen of them (role, healthy, reason, timeline)."""
        return self._all("SELECT n.server, n.role, n.healthy, n.reason, n.timeline, n.checked, "
                         "n.added FROM replica_set_nodes n WHERE n.replica_set = ? "
                         "ORDER BY n.server", replica_set)

    def update_node(self, server: str, **fields: object) -> None:
        sets = ", ".join(f"{k} = ?" for k in fields)
        self._run(f"UPDATE replica_set_nodes SET {sets} WHERE server = ?", *fields.values(),
                  server)

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

    # protection: protected items (databases of an instance) ----------------------------
    def protect_items(self, instance_id: int, items: list[tuple[str, int | None]],
                      policy: str | None) -> None:
        """Protect (or re-protect) databases ``items`` (name, oid) with ``policy``."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT INTO protected_databases (instance_id, name, oid, policy, since) "
                    "VALUES (?, ?, ?, ?, datetime('now')) ON CONFLICT (instance_id, name) DO "
                    "UPDATE SET policy = excluded.policy, oid = COALESCE(excluded.oid, oid), "
                    "state = 'protected', state_reason = NULL",
                    [(instance_id, name, oid, policy) for name, oid in items])
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def list_items(self, instance_id: int | None = None) -> list[dict]:
        """Protected items (every state) with their server's name."""
        sql = ("SELECT p.*, s.name AS server FROM protected_databases p "
               "JOIN instances i ON i.id = p.instance_id JOIN servers s ON s.id = i.server_id")
        if instance_id is None:
            return self._all(sql + " ORDER BY s.name, p.name")
        return self._all(sql + " WHERE p.instance_id = ? ORDER BY p.name", instance_id)

    def set_item(self, instance_id: int, name: str, **fields: object) -> None:
        """Update an item's state, state_reason, warning or policy."""
        sets = ", ".join(f"{k} = ?" for k in fields)
        self._run(f"UPDATE protected_databases SET {sets} WHERE instance_id = ? AND name = ?",
                  *fields.values(), instance_id, name)

    def remove_items(self, instance_id: int, names: list[str]) -> None:
        with self._lock:
            self._db.executemany("DELETE FROM protected_databases WHERE instance_id = ? AND "
                                 "name = ?", [(instance_id, n) for n in names])

    def count_items(self, instance_id: int | None = None) -> int:
        """Items that count against the limits: every state but 'stopped' and 'source-gone'."""
        sql = ("SELECT count(*) AS n FROM protected_databases "
               "WHERE state NOT IN ('stopped', 'source-gone')")
        if instance_id is None:
            return self._one(sql)["n"]
        return self._one(sql + " AND instance_id = ?", instance_id)["n"]

    def list_protected(self, instance_id: int) -> list[str]:
        """Names of the databases a backup run of the instance covers."""
        return [r["name"] for r in self._all(
            "SELECT name FROM protected_databases WHERE instance_id = ? AND state IN "
            "('protected', 'inconsistent-policy') ORDER BY name", instance_id)]

    # scheduler ------------------------------------------------------------------------
    def get_slot(self, instance_id: int, policy: str, kind: str) -> dict | None:
        return self._one("SELECT * FROM schedule_state WHERE instance_id = ? AND policy = ? "
                         "AND kind = ?", instance_id, policy, kind)

    def claim_slot(self, instance_id: int, policy: str, kind: str, slot: str,
                   attempts: int = 1) -> None:
        """Record ``slot`` as handled (before its job runs: a crash does not repeat it)."""
        self._run("INSERT INTO schedule_state (instance_id, policy, kind, last_slot, attempts) "
                  "VALUES (?, ?, ?, ?, ?) ON CONFLICT (instance_id, policy, kind) DO UPDATE "
                  "SET last_slot = excluded.last_slot, attempts = excluded.attempts, "
                  "job_id = NULL", instance_id, policy, kind, slot, attempts)

    def set_slot_job(self, instance_id: int, policy: str, kind: str, job_id: str) -> None:
        self._run("UPDATE schedule_state SET job_id = ? WHERE instance_id = ? AND policy = ? "
                  "AND kind = ?", job_id, instance_id, policy, kind)
    # discovery and auto-protection (issue 5, services/discovery.py) ---------------------
    def get_instance(self, instance_id: int) -> dict | None:
        """Every column of an instance row (auto_protect_policy, discovered, ...)."""
        return self._one("SELECT * FROM instances WHERE id = ?", instance_id)

    # jobs --------------------------------------------------------------------------------
    def create_job(self, job_id: str, type: str, server: str | None, pid: int,
                   start_time: str, *, conflicts: tuple[str, ...] = (),
                   alive: Callable[[int], bool] | None = None, **extra: object) -> dict | None:
        """Insert a running job, unless a live job of ``server`` with a backup_type in
        ``conflicts`` runs: then return that job and insert nothing (one transaction)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if conflicts:
                    rows = self._db.execute(
                        "SELECT * FROM jobs WHERE server = ? AND type = ? AND state IN "
                        "('running', 'cancelling') AND backup_type IN "
                        f"({', '.join('?' for _ in conflicts)})",
                        (server, type, *conflicts)).fetchall()
                    for row in map(dict, rows):
                        if alive is None or alive(row["pid"]):
                            self._db.execute("ROLLBACK")
                            return row
                cols = {"id": job_id, "type": type, "server": server, "state": "running",
                        "start_time": start_time, "pid": pid, **extra}
                self._db.execute(f"INSERT INTO jobs ({', '.join(cols)}) VALUES "
                                 f"({', '.join('?' for _ in cols)})", tuple(cols.values()))
                self._db.execute("COMMIT")
                return None
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def update_job(self, job_id: str, **fields: object) -> None:
        sets = ", ".join(f"{k} = ?" for k in fields)
        self._run(f"UPDATE jobs SET {sets} WHERE id = ?", *fields.values(), job_id)

    def get_job(self, job_id: str) -> dict | None:
        return self._one("SELECT * FROM jobs WHERE id = ?", job_id)

    def list_jobs(self, limit: int = 100, **equal: object) -> list[dict]:
        """Newest first; ``equal`` filters columns (None values are ignored)."""
        where = {k: v for k, v in equal.items() if v is not None}
        sql = "SELECT * FROM jobs"
        if where:
            sql += " WHERE " + " AND ".join(f"{k} = ?" for k in where)
        return self._all(sql + " ORDER BY start_time DESC, id DESC LIMIT ?",
                         *where.values(), limit)

    # alerts and alert channels (issue 5, alerts) ---------------------------------------
    _ALERT_KEY = "state = 'active' AND kind = ? AND server IS ? AND item IS ?"

    @staticmethod
    def _keep_deliveries(old: str | None, new: str | None) -> str | None:
        """The new details JSON of a repeated alert, keeping the old record of deliveries."""
        kept = json.loads(old).get("deliveries") if old else None
        if not kept:
            return new
        return json.dumps({**(json.loads(new) if new else {}), "deliveries": kept})

    def upsert_alert(self, alert: dict, now: str) -> tuple[dict, bool]:
        key = (alert["kind"], alert.get("server"), alert.get("item"))
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(f"SELECT id, details FROM alerts WHERE "
                                       f"{self._ALERT_KEY}", key).fetchone()
                if row is None:
                    alert_id = self._db.execute(
                        "INSERT INTO alerts (kind, severity, server, item, message, details, "
                        "job_id, raised, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (alert["kind"], alert["severity"], alert.get("server"),
                         alert.get("item"), alert["message"], alert.get("details"),
                         alert.get("job_id"), now, now)).lastrowid
                else:
                    alert_id = row["id"]
                    details = self._keep_deliveries(row["details"], alert.get("details"))
                    self._db.execute(
                        "UPDATE alerts SET count = count + 1, last_seen = ?, severity = ?, "
                        "message = ?, details = ?, job_id = coalesce(?, job_id) WHERE id = ?",
                        (now, alert["severity"], alert["message"], details,
                         alert.get("job_id"), alert_id))
                found = self._db.execute("SELECT * FROM alerts WHERE id = ?",
                                         (alert_id,)).fetchone()
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return dict(found), row is None

    def get_alert(self, alert_id: int) -> dict | None:
        return self._one("SELECT * FROM alerts WHERE id = ?", alert_id)

    def update_alert(self, alert_id: int, **fields: object) -> None:
        sets = ", ".join(f"{k} = ?" for k in fields)
        self._run(f"UPDATE alerts SET {sets} WHERE id = ?", *fields.values(), alert_id)

    def resolve_alert_rows(self, now: str, *, alert_id: int | None = None,
                           key: tuple[str, str | None, str | None] | None = None
                           ) -> list[dict]:
        where, args = (("state = 'active' AND id = ?", (alert_id,)) if key is None
                       else (self._ALERT_KEY, key))
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                ids = [r["id"] for r in self._db.execute(
                    f"SELECT id FROM alerts WHERE {where}", args).fetchall()]
                self._db.executemany("UPDATE alerts SET state = 'resolved', resolved = ? "
                                     "WHERE id = ?", [(now, i) for i in ids])
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return [r for i in ids if (r := self.get_alert(i)) is not None]

    def list_alerts(self, state: str | None = None) -> list[dict]:
        if state is None:
            return self._all("SELECT * FROM alerts ORDER BY last_seen DESC, id DESC")
        return self._all("SELECT * FROM alerts WHERE state = ? ORDER BY last_seen DESC, "
                         "id DESC", state)

    def add_alert_channel(self, kind: str, target: str, options: str | None,
                          on_success: bool, created: str) -> int:
        return int(self._run("INSERT INTO alert_channels (kind, target, options, on_success, "
                             "created) VALUES (?, ?, ?, ?, ?)", kind, target, options,
                             int(on_success), created).lastrowid)

    def get_alert_channel(self, channel_id: int) -> dict | None:
        return self._one("SELECT * FROM alert_channels WHERE id = ?", channel_id)

    def list_alert_channels(self) -> list[dict]:
        return self._all("SELECT * FROM alert_channels ORDER BY id")

    def remove_alert_channel(self, channel_id: int) -> bool:
        return self._run("DELETE FROM alert_channels WHERE id = ?", channel_id).rowcount > 0


    # policies (issue 5, policy piece) ----------------------------------------------------
    def insert_policy(self, name: str, body: str, created: str) -> bool:
        """Add a policy; False (and nothing changed) when the name is taken."""
        return self._run("INSERT OR IGNORE INTO policies (name, body, created, updated) "
                         "VALUES (?, ?, ?, ?)", name, body, created, created).rowcount > 0

    def update_policy(self, name: str, body: str, updated: str) -> bool:
        return self._run("UPDATE policies SET body = ?, updated = ? WHERE name = ?",
                         body, updated, name).rowcount > 0

    def delete_policy(self, name: str) -> bool:
        return self._run("DELETE FROM policies WHERE name = ?", name).rowcount > 0

    def get_policy(self, name: str) -> dict | None:
        return self._one("SELECT name, body, created, updated FROM policies WHERE name = ?",
                         name)

    def list_policies(self) -> list[dict]:
        return self._all("SELECT name, body, created, updated FROM policies ORDER BY name")

    def policy_users(self) -> list[dict]:
        """Who uses a policy: protected databases (kind "database") and instances that
        auto-protect with it (kind "auto-protection"), as rows (policy, kind, server,
        database)."""
        return self._all(
            "SELECT pd.policy AS policy, 'database' AS kind, s.name AS server, "
            "pd.name AS database FROM protected_databases pd "
            "JOIN instances i ON i.id = pd.instance_id JOIN servers s ON s.id = i.server_id "
            "WHERE pd.policy IS NOT NULL "
            "UNION ALL "
            "SELECT i.auto_protect_policy, 'auto-protection', s.name, NULL FROM instances i "
            "JOIN servers s ON s.id = i.server_id WHERE i.auto_protect_policy IS NOT NULL "
            "ORDER BY 1, 2, 3, 4")
    # end of policies ---------------------------------------------------------------------

    # restore drills (issue 5, drills) ---------------------------------------------------
    _DRILL_COLS = ("id", "server", "point_id", "started", "finished", "state", "rto_seconds",
                   "rpo_seconds", "checks", "error_code", "error_message")

    def set_table_counts(self, point_id: str, counts: str) -> None:
        self._run("UPDATE recovery_points SET table_counts = ? WHERE point_id = ?", counts,
                  point_id)

    def add_drill(self, row: dict) -> None:
        marks = ", ".join("?" for _ in self._DRILL_COLS)
        self._run(f"INSERT INTO drills ({', '.join(self._DRILL_COLS)}) VALUES ({marks})",
                  *(row.get(c) for c in self._DRILL_COLS))

    def update_drill(self, drill_id: str, **fields: object) -> None:
        sets = ", ".join(f"{k} = ?" for k in fields)
        self._run(f"UPDATE drills SET {sets} WHERE id = ?", *fields.values(), drill_id)

    def list_drills(self, server: str | None = None, limit: int = 100) -> list[dict]:
        where, args = ("WHERE server = ?", [server]) if server else ("", [])
        return self._all(f"SELECT * FROM drills {where} ORDER BY started DESC, id DESC "
                         "LIMIT ?", *args, limit)

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

    # soft delete (issue 7: services/softdelete.py) ----------------------------------------
    def set_point_deleted(self, point_id: str, deleted_at: str | None,
                          purge_after: str | None) -> None:
        self._run("UPDATE recovery_points SET deleted_at = ?, purge_after = ? "
                  "WHERE point_id = ?", deleted_at, purge_after, point_id)
