"""The catalog's queries, shared by the SQLite and PostgreSQL backends.

``SqlCatalog`` holds every method of the ``Catalog`` interface, written once in the SQL both
databases accept (``?`` placeholders, ``INSERT ... ON CONFLICT``). A backend supplies how a
statement runs (``_single``: one connection, autocommit) and how a read-modify-write runs
atomically (``_atomic``), plus two small dialect strings: ``_NOW`` (the time now, as the
text ``YYYY-MM-DDTHH:MM:SS+00:00``: ISO 8601 with its zone, as every time the catalog
holds) and ``_IS`` (NULL-safe equality).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from importlib import resources
from typing import Protocol, TypeVar

T = TypeVar("T")

_MIGRATIONS = resources.files("dbsafe.catalog") / "migrations"
_LOCK_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]*")


def check_lock_name(name: str) -> str:
    """A name for ``exclusive()``: lower-case letters, digits and ``_.-`` (it names a file)."""
    if not _LOCK_NAME.fullmatch(name):
        raise ValueError(f"bad lock name {name!r}")
    return name


def migrations() -> list[tuple[int, str]]:
    """The numbered ``migrations/NNNN_*.sql`` scripts, in order."""
    found = []
    for entry in _MIGRATIONS.iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.read_text()))
    return sorted(found)


def statements(script: str) -> Iterator[str]:
    """The statements of a migration script (split on semicolons: comments must hold none)."""
    return (s for s in script.split(";") if s.strip())


class Session(Protocol):
    """One connection's statements; ``?`` placeholders, rows as dicts."""

    def all(self, sql: str, args: tuple = ()) -> list[dict]: ...
    def run(self, sql: str, args: tuple = ()) -> int:
        """Run a statement; the number of rows it changed."""
    def many(self, sql: str, rows: list[tuple]) -> int:
        """Run a statement once per row; the number of rows changed in all."""
    def insert_id(self, sql: str, args: tuple = ()) -> int:
        """Run an INSERT into a table with an ``id`` key; the id of the new row."""


class SqlCatalog:
    _NOW = "strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now')"
    _IS = "IS"
    _SKIP_LOCKED = ""  # SQLite has one writer at a time: the claim needs no row locks

    # what a backend provides ---------------------------------------------------------
    def _single(self, body: Callable[[Session], T]) -> T:
        """Run ``body``'s statement(s) on one connection, each committed at once."""
        raise NotImplementedError

    def _atomic(self, body: Callable[[Session], T], lock: str | None = None) -> T:
        """Run ``body`` in one transaction that no other writer interleaves with: on
        ``lock`` (a table) no other transaction writes until this one ends."""
        raise NotImplementedError

    # helpers -------------------------------------------------------------------------
    def _all(self, sql: str, *args: object) -> list[dict]:
        return self._single(lambda s: s.all(sql, args))

    def _one(self, sql: str, *args: object) -> dict | None:
        rows = self._all(sql, *args)
        return rows[0] if rows else None

    def _run(self, sql: str, *args: object) -> int:
        return self._single(lambda s: s.run(sql, args))

    def _update(self, table: str, where: str, fields: dict, *key: object) -> None:
        sets = ", ".join(f"{k} = ?" for k in fields)
        self._run(f"UPDATE {table} SET {sets} WHERE {where}", *fields.values(), *key)

    # vault -------------------------------------------------------------------------------
    def record_vault(self, vault_id: str, path: str, region: str | None, created: str) -> None:
        self._run("INSERT INTO vaults VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING", vault_id,
                  path, region, created)

    def set_vault_region(self, vault_id: str, region: str) -> None:
        self._run("UPDATE vaults SET region = ? WHERE vault_id = ?", region, vault_id)

    # servers -----------------------------------------------------------------------------
    def add_server(self, name: str, host: str, region: str | None, instance: dict,
                   kind: str = "server") -> int:
        def body(s: Session) -> int:
            server_id = s.insert_id(
                "INSERT INTO servers (name, host, region, created, kind) "
                f"VALUES (?, ?, ?, {self._NOW}, ?)", (name, host, region, kind))
            cols = ", ".join(instance)
            marks = ", ".join("?" for _ in instance)
            return s.insert_id(f"INSERT INTO instances (server_id, {cols}) VALUES (?, {marks})",
                               (server_id, *instance.values()))
        return self._atomic(body)

    _SERVER_SELECT = (
        "SELECT s.name, s.host AS server_host, s.region, s.created, s.kind, s.agent_id, "
        "i.id AS instance_id, "
        "i.pgdata, i.port, i.host, i.bin_dir, i.socket_dir, i.pg_version, "
        "i.system_identifier, i.recovery_model, i.data_checksums, i.wal_segment_size, "
        "i.auto_protect_policy, i.needs_full, i.max_concurrent, i.discovered, "
        "i.archive_lag_bytes, i.archive_lag_checked, n.replica_set "
        "FROM servers s JOIN instances i ON i.server_id = s.id "
        "LEFT JOIN replica_set_nodes n ON n.server = s.name")

    def get_server(self, name: str) -> dict | None:
        return self._one(self._SERVER_SELECT + " WHERE s.name = ?", name)

    def list_servers(self) -> list[dict]:
        return self._all(self._SERVER_SELECT + " ORDER BY s.name")

    def remove_server(self, name: str) -> bool:
        return self._run("DELETE FROM servers WHERE name = ?", name) > 0

    def update_server(self, name: str, **fields: object) -> None:
        self._update("servers", "name = ?", fields, name)

    def update_instance(self, instance_id: int, **fields: object) -> None:
        self._update("instances", "id = ?", fields, instance_id)

    # replica sets ------------------------------------------------------------------------
    def add_replica_set(self, name: str, preference: str) -> None:
        self._run("INSERT INTO replica_sets (name, preference, created) "
                  f"VALUES (?, ?, {self._NOW})", name, preference)

    def get_replica_set(self, name: str) -> dict | None:
        return self._one("SELECT * FROM replica_sets WHERE name = ?", name)

    def list_replica_sets(self) -> list[dict]:
        return self._all("SELECT * FROM replica_sets ORDER BY name")

    def update_replica_set(self, name: str, **fields: object) -> None:
        self._update("replica_sets", "name = ?", fields, name)

    def remove_replica_set(self, name: str) -> None:
        """The set, its node memberships and its own server entry (items, points rows)."""
        def body(s: Session) -> None:
            s.run("DELETE FROM replica_sets WHERE name = ?", (name,))
            s.run("DELETE FROM servers WHERE name = ? AND kind = 'replica-set'", (name,))
        self._atomic(body)

    def add_node(self, replica_set: str, server: str) -> None:
        self._run("INSERT INTO replica_set_nodes (replica_set, server, added) "
                  f"VALUES (?, ?, {self._NOW})", replica_set, server)

    def remove_node(self, replica_set: str, server: str) -> bool:
        return self._run("DELETE FROM replica_set_nodes WHERE replica_set = ? AND server = ?",
                         replica_set, server) > 0

    def list_nodes(self, replica_set: str) -> list[dict]:
        """The nodes with what was last seen of them (role, healthy, reason, timeline)."""
        return self._all("SELECT n.server, n.role, n.healthy, n.reason, n.timeline, n.checked, "
                         "n.added FROM replica_set_nodes n WHERE n.replica_set = ? "
                         "ORDER BY n.server", replica_set)

    def update_node(self, server: str, **fields: object) -> None:
        self._update("replica_set_nodes", "server = ?", fields, server)

    def report_node(self, row: dict) -> None:
        """What an agent saw of a node of its host (replaces its last report)."""
        cols = ("server", "role", "timeline", "healthy", "reason", "replay_lsn", "reported")
        self._run(f"INSERT INTO node_reports ({', '.join(cols)}) VALUES "
                  f"({', '.join('?' for _ in cols)}) ON CONFLICT (server) DO UPDATE SET "
                  + ", ".join(f"{c} = excluded.{c}" for c in cols[1:]),
                  *(row.get(c) for c in cols))

    def get_node_report(self, server: str) -> dict | None:
        return self._one("SELECT * FROM node_reports WHERE server = ?", server)

    # databases ---------------------------------------------------------------------------
    def replace_databases(self, instance_id: int, databases: list[dict]) -> None:
        def body(s: Session) -> None:
            s.run("DELETE FROM databases WHERE instance_id = ?", (instance_id,))
            s.many("INSERT INTO databases (instance_id, name, oid, size_bytes, file_count, "
                   f"read_only, kind, discovered) VALUES (?, ?, ?, ?, ?, ?, ?, {self._NOW})",
                   [(instance_id, d["name"], d["oid"], d["size_bytes"], d["file_count"],
                     int(d["read_only"]), d["kind"]) for d in databases])
        self._atomic(body, lock="databases")

    def list_databases(self, instance_id: int) -> list[dict]:
        return self._all("SELECT name, oid, size_bytes, file_count, read_only, kind, discovered "
                         "FROM databases WHERE instance_id = ? ORDER BY name", instance_id)

    # points ------------------------------------------------------------------------------
    _POINT_COLS = ("point_id", "type", "copy_only", "start_time", "end_time", "start_lsn",
                   "stop_lsn", "timeline", "bytes_read", "bytes_stored", "corrupt_pages",
                   "databases", "base_point", "retention", "left_out", "build", "item_usage")

    def add_point(self, instance_id: int, point: dict) -> None:
        cols = ", ".join(self._POINT_COLS)
        marks = ", ".join("?" for _ in self._POINT_COLS)
        self._run(f"INSERT INTO recovery_points (instance_id, {cols}) VALUES (?, {marks}) "
                  "ON CONFLICT DO NOTHING", instance_id,
                  *(point.get(c) for c in self._POINT_COLS))

    def point_ids(self) -> set[str]:
        """The id of every point the catalog holds, of every server."""
        return {r["point_id"] for r in self._all("SELECT point_id FROM recovery_points")}

    def deleted_point_ids(self) -> set[str]:
        """The points soft-deleted (``deleted_at`` set), of every server."""
        return {r["point_id"] for r in self._all(
            "SELECT point_id FROM recovery_points WHERE deleted_at IS NOT NULL")}

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
        sets = ", ".join(f"{c} = excluded.{c}" for c in self._WAL_COLS[2:])
        self._run(f"INSERT INTO wal_files ({', '.join(self._WAL_COLS)}) VALUES ({marks}) "
                  f"ON CONFLICT (system_identifier, name) DO UPDATE SET {sets}",
                  *(row.get(c) for c in self._WAL_COLS))

    def list_wal_files(self, system_identifier: str) -> list[dict]:
        # NULLS FIRST is SQLite's default order, spelled out for PostgreSQL
        return self._all("SELECT * FROM wal_files WHERE system_identifier = ? "
                         "ORDER BY timeline NULLS FIRST, segno NULLS FIRST, name",
                         system_identifier)

    def wal_file_names(self, system_identifier: str) -> set[str]:
        return {r["name"] for r in self._all(
            "SELECT name FROM wal_files WHERE system_identifier = ?", system_identifier)}

    # protection: protected items (databases of an instance) ----------------------------
    def protect_items(self, instance_id: int, items: list[tuple[str, int | None]],
                      policy: str | None) -> None:
        """Protect (or re-protect) databases ``items`` (name, oid) with ``policy``."""
        def body(s: Session) -> None:
            s.many("INSERT INTO protected_databases (instance_id, name, oid, policy, since) "
                   f"VALUES (?, ?, ?, ?, {self._NOW}) ON CONFLICT (instance_id, name) DO "
                   "UPDATE SET policy = excluded.policy, "
                   "oid = COALESCE(excluded.oid, protected_databases.oid), "
                   "state = 'protected', state_reason = NULL",
                   [(instance_id, name, oid, policy) for name, oid in items])
        self._atomic(body)

    def list_items(self, instance_id: int | None = None) -> list[dict]:
        """Protected items (every state) with their server's name."""
        sql = ("SELECT p.*, s.name AS server FROM protected_databases p "
               "JOIN instances i ON i.id = p.instance_id JOIN servers s ON s.id = i.server_id")
        if instance_id is None:
            return self._all(sql + " ORDER BY s.name, p.name")
        return self._all(sql + " WHERE p.instance_id = ? ORDER BY p.name", instance_id)

    def set_item(self, instance_id: int, name: str, **fields: object) -> None:
        """Update an item's state, state_reason, warning or policy."""
        self._update("protected_databases", "instance_id = ? AND name = ?", fields,
                     instance_id, name)

    def remove_items(self, instance_id: int, names: list[str]) -> None:
        self._single(lambda s: s.many(
            "DELETE FROM protected_databases WHERE instance_id = ? AND name = ?",
            [(instance_id, n) for n in names]))

    def count_items(self, instance_id: int | None = None) -> int:
        """Items that count against the limits: every state but 'stopped' and 'source-gone'."""
        sql = ("SELECT count(*) AS n FROM protected_databases "
               "WHERE state NOT IN ('stopped', 'source-gone')")
        row = self._one(sql) if instance_id is None else \
            self._one(sql + " AND instance_id = ?", instance_id)
        assert row is not None  # count(*) returns a row
        return row["n"]

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

    # discovery and auto-protection (services/protection/discovery.py)
    def get_instance(self, instance_id: int) -> dict | None:
        """Every column of an instance row (auto_protect_policy, discovered, ...)."""
        return self._one("SELECT * FROM instances WHERE id = ?", instance_id)

    # jobs --------------------------------------------------------------------------------
    def create_job(self, job_id: str, type: str, server: str | None, pid: int,
                   start_time: str, *, conflicts: tuple[str, ...] = (),
                   alive: Callable[[dict], bool] | None = None, **extra: object) -> dict | None:
        """Insert a running job, unless a live job of ``server`` with a backup_type in
        ``conflicts`` is queued or runs: then return that job and insert nothing (one
        transaction). A job an agent claimed (docs/fleet.md) has its row already: that row
        is taken over (the time it was queued stays its start time)."""
        def body(s: Session) -> dict | None:
            if conflicts:
                rows = s.all(
                    "SELECT * FROM jobs WHERE server = ? AND type = ? AND id <> ? AND state "
                    "IN ('queued', 'running', 'cancelling') AND backup_type IN "
                    f"({', '.join('?' for _ in conflicts)})", (server, type, job_id, *conflicts))
                for row in rows:
                    if alive is None or alive(row):
                        return row
            cols = {"id": job_id, "type": type, "server": server, "state": "running",
                    "start_time": start_time, "pid": pid, **extra}
            claimed = s.all("SELECT * FROM jobs WHERE id = ?", (job_id,))
            if claimed:  # ended meanwhile (lost, cancelled): returned, and left as it is
                taken = {k: v for k, v in cols.items() if k not in ("id", "start_time")}
                changed = s.run(f"UPDATE jobs SET {', '.join(f'{k} = ?' for k in taken)} "
                                "WHERE id = ? AND state = 'running'", (*taken.values(), job_id))
                return None if changed else claimed[0]
            s.run(f"INSERT INTO jobs ({', '.join(cols)}) VALUES "
                  f"({', '.join('?' for _ in cols)})", tuple(cols.values()))
            return None
        return self._atomic(body, lock="jobs")

    def update_job(self, job_id: str, **fields: object) -> bool:
        """Write ``fields`` of a job; whether a cancel of it was requested (a running
        job's progress write is also its look for a cancel: one statement, not two)."""
        sets = ", ".join(f"{k} = ?" for k in fields)
        rows = self._single(lambda s: s.all(
            f"UPDATE jobs SET {sets} WHERE id = ? RETURNING cancel_requested",
            (*fields.values(), job_id)))
        return bool(rows and rows[0]["cancel_requested"])

    def get_job(self, job_id: str) -> dict | None:
        return self._one("SELECT * FROM jobs WHERE id = ?", job_id)

    def list_jobs(self, limit: int = 100, offset: int = 0, since: str | None = None,
                  until: str | None = None, **equal: object) -> list[dict]:
        """Newest first, ``offset`` rows skipped (a page); ``equal`` filters columns (None
        values are ignored); ``since`` (included) and ``until`` (excluded) bound the start
        time, written as the catalog writes it (ISO 8601, UTC)."""
        where, args = _job_filter(since, until, equal)
        return self._all(f"SELECT * FROM jobs{where} ORDER BY start_time DESC, id DESC "
                         "LIMIT ? OFFSET ?", *args, limit, offset)

    def count_jobs(self, since: str | None = None, until: str | None = None,
                   **equal: object) -> int:
        """How many jobs ``list_jobs`` with the same filters pages through."""
        where, args = _job_filter(since, until, equal)
        row = self._one(f"SELECT COUNT(*) AS n FROM jobs{where}", *args)
        return int(row["n"]) if row else 0

    # alerts and alert channels (services/activity/alerts.py) ----------------------------
    @property
    def _alert_key(self) -> str:
        return f"state = 'active' AND kind = ? AND server {self._IS} ? AND item {self._IS} ?"

    @staticmethod
    def _keep_deliveries(old: str | None, new: str | None) -> str | None:
        """The new details JSON of a repeated alert, keeping the old record of deliveries."""
        kept = json.loads(old).get("deliveries") if old else None
        if not kept:
            return new
        return json.dumps({**(json.loads(new) if new else {}), "deliveries": kept})

    def upsert_alert(self, alert: dict, now: str) -> tuple[dict, bool]:
        key = (alert["kind"], alert.get("server"), alert.get("item"))

        def body(s: Session) -> tuple[dict, bool]:
            rows = s.all(f"SELECT id, details FROM alerts WHERE {self._alert_key}", key)
            if not rows:
                alert_id = s.insert_id(
                    "INSERT INTO alerts (kind, severity, server, item, message, details, "
                    "job_id, raised, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (alert["kind"], alert["severity"], alert.get("server"),
                     alert.get("item"), alert["message"], alert.get("details"),
                     alert.get("job_id"), now, now))
            else:
                alert_id = rows[0]["id"]
                details = self._keep_deliveries(rows[0]["details"], alert.get("details"))
                s.run("UPDATE alerts SET count = count + 1, last_seen = ?, severity = ?, "
                      "message = ?, details = ?, job_id = coalesce(?, job_id) WHERE id = ?",
                      (now, alert["severity"], alert["message"], details,
                       alert.get("job_id"), alert_id))
            return s.all("SELECT * FROM alerts WHERE id = ?", (alert_id,))[0], not rows
        return self._atomic(body, lock="alerts")

    def get_alert(self, alert_id: int) -> dict | None:
        return self._one("SELECT * FROM alerts WHERE id = ?", alert_id)

    def update_alert(self, alert_id: int, **fields: object) -> None:
        self._update("alerts", "id = ?", fields, alert_id)

    def resolve_alert_rows(self, now: str, *, alert_id: int | None = None,
                           key: tuple[str, str | None, str | None] | None = None
                           ) -> list[dict]:
        where, args = (("state = 'active' AND id = ?", (alert_id,)) if key is None
                       else (self._alert_key, key))

        def body(s: Session) -> list[int]:
            ids = [r["id"] for r in s.all(f"SELECT id FROM alerts WHERE {where}", args)]
            s.many("UPDATE alerts SET state = 'resolved', resolved = ? WHERE id = ?",
                   [(now, i) for i in ids])
            return ids
        ids = self._atomic(body, lock="alerts")
        return [r for i in ids if (r := self.get_alert(i)) is not None]

    def list_alerts(self, state: str | None = None, limit: int | None = None,
                    offset: int = 0) -> list[dict]:
        args: tuple[object, ...]
        where, args = ("", ()) if state is None else ("WHERE state = ? ", (state,))
        page = "" if limit is None else " LIMIT ? OFFSET ?"
        args += () if limit is None else (limit, offset)
        return self._all(f"SELECT * FROM alerts {where}ORDER BY last_seen DESC, id DESC{page}",
                         *args)

    def add_alert_channel(self, kind: str, target: str, options: str | None,
                          on_success: bool, created: str) -> int:
        return self._single(lambda s: s.insert_id(
            "INSERT INTO alert_channels (kind, target, options, on_success, created) "
            "VALUES (?, ?, ?, ?, ?)", (kind, target, options, int(on_success), created)))

    def get_alert_channel(self, channel_id: int) -> dict | None:
        return self._one("SELECT * FROM alert_channels WHERE id = ?", channel_id)

    def list_alert_channels(self) -> list[dict]:
        return self._all("SELECT * FROM alert_channels ORDER BY id")

    def remove_alert_channel(self, channel_id: int) -> bool:
        return self._run("DELETE FROM alert_channels WHERE id = ?", channel_id) > 0

    # policies (services/inventory/policies.py) -------------------------------------------
    def insert_policy(self, name: str, body: str, created: str) -> bool:
        """Add a policy; False (and nothing changed) when the name is taken."""
        return self._run("INSERT INTO policies (name, body, created, updated) "
                         "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                         name, body, created, created) > 0

    def update_policy(self, name: str, body: str, updated: str) -> bool:
        return self._run("UPDATE policies SET body = ?, updated = ? WHERE name = ?",
                         body, updated, name) > 0

    def delete_policy(self, name: str) -> bool:
        return self._run("DELETE FROM policies WHERE name = ?", name) > 0

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
            "ORDER BY 1, 2, 3, 4 NULLS FIRST")

    # restore drills (services/restore/drills.py) ----------------------------------------
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
        self._update("drills", "id = ?", fields, drill_id)

    def list_drills(self, server: str | None = None, limit: int = 100) -> list[dict]:
        where, args = ("WHERE server = ?", [server]) if server else ("", [])
        return self._all(f"SELECT * FROM drills {where} ORDER BY started DESC, id DESC "
                         "LIMIT ?", *args, limit)

    # deleting points and pruning the log chain (services/lifecycle/prune.py)
    def delete_point(self, point_id: str) -> bool:
        return self._run("DELETE FROM recovery_points WHERE point_id = ?", point_id) > 0

    def mark_point_deleting(self, point_id: str, when: str) -> None:
        """dbsafe is about to remove this point's manifest
        (services/lifecycle/prune.remove_points)."""
        self._run("UPDATE recovery_points SET deleting = ? WHERE point_id = ?", when, point_id)

    def point_deletions(self) -> dict[str, str | None]:
        """Every point's id, with when dbsafe started deleting it (``mark_point_deleting``)
        or None: one read, so that a deletion finishing meanwhile is seen whole."""
        return {r["point_id"]: r["deleting"] for r in self._all(
            "SELECT point_id, deleting FROM recovery_points")}

    # soft delete (services/lifecycle/deletion.py)
    def set_point_deleted(self, point_id: str, deleted_at: str | None,
                          purge_after: str | None) -> None:
        self._run("UPDATE recovery_points SET deleted_at = ?, purge_after = ? "
                  "WHERE point_id = ?", deleted_at, purge_after, point_id)

    def delete_wal_files(self, system_identifier: str, names: list[str]) -> int:
        """Remove the rows of these WAL files, in one transaction; returns how many."""
        return self._atomic(lambda s: s.many(
            "DELETE FROM wal_files WHERE system_identifier = ? AND name = ?",
            [(system_identifier, n) for n in names]))

    # access: API tokens, portal users and sessions, the audit log ------------------------
    def add_token(self, row: dict) -> None:
        self._run("INSERT INTO api_tokens (id, name, role, secret_hash, created, created_by) "
                  "VALUES (?, ?, ?, ?, ?, ?)", row["id"], row["name"], row["role"],
                  row["secret_hash"], row["created"], row["created_by"])

    def get_token(self, token_id: str) -> dict | None:
        return self._one("SELECT * FROM api_tokens WHERE id = ?", token_id)

    def list_tokens(self) -> list[dict]:
        return self._all("SELECT * FROM api_tokens ORDER BY created, id")

    def update_token(self, token_id: str, **fields: object) -> None:
        self._update("api_tokens", "id = ?", fields, token_id)

    def add_user(self, name: str, role: str, password_hash: str, created: str) -> bool:
        return self._run("INSERT INTO users VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                         name, role, password_hash, created) > 0

    def get_user(self, name: str) -> dict | None:
        return self._one("SELECT * FROM users WHERE name = ?", name)

    def list_users(self) -> list[dict]:
        return self._all("SELECT name, role, created FROM users ORDER BY name")

    def update_user(self, name: str, **fields: object) -> None:
        self._update("users", "name = ?", fields, name)

    def remove_user(self, name: str) -> bool:
        return self._run("DELETE FROM users WHERE name = ?", name) > 0

    def add_session(self, row: dict) -> None:
        cols = ", ".join(row)
        self._run(f"INSERT INTO sessions ({cols}) VALUES ({', '.join('?' for _ in row)})",
                  *row.values())

    def get_session(self, id_hash: str) -> dict | None:
        return self._one(
            "SELECT s.*, CASE WHEN s.token_id IS NULL THEN NULL "
            "WHEN t.id IS NOT NULL AND t.revoked IS NULL THEN 1 ELSE 0 END AS token_live "
            "FROM sessions s LEFT JOIN api_tokens t ON t.id = s.token_id "
            "WHERE s.id_hash = ?", id_hash)

    def update_session(self, id_hash: str, **fields: object) -> None:
        self._update("sessions", "id_hash = ?", fields, id_hash)

    def remove_sessions(self, *, id_hash: str | None = None, principal: str | None = None,
                        token_id: str | None = None, before: str | None = None) -> int:
        """End one session, every session of a principal or opened with a token, or those
        expired before a time."""
        if id_hash is not None:
            return self._run("DELETE FROM sessions WHERE id_hash = ?", id_hash)
        if principal is not None:
            return self._run("DELETE FROM sessions WHERE principal = ?", principal)
        if token_id is not None:
            return self._run("DELETE FROM sessions WHERE token_id = ?", token_id)
        return self._run("DELETE FROM sessions WHERE expires < ? OR absolute_expiry < ?",
                         before, before)

    def add_login_device(self, id_hash: str, user_name: str, created: str,
                         keep: int) -> None:
        def body(s: Session) -> None:
            s.run("INSERT INTO login_devices VALUES (?, ?, ?)", (id_hash, user_name, created))
            s.run("DELETE FROM login_devices WHERE user_name = ? AND id_hash NOT IN ("
                  "SELECT id_hash FROM login_devices WHERE user_name = ? "
                  "ORDER BY created DESC, id_hash LIMIT ?)", (user_name, user_name, keep))
        self._atomic(body)

    def get_login_device(self, id_hash: str) -> dict | None:
        return self._one("SELECT * FROM login_devices WHERE id_hash = ?", id_hash)

    def remove_login_devices(self, user_name: str) -> int:
        return self._run("DELETE FROM login_devices WHERE user_name = ?", user_name)

    def add_audit(self, row: dict) -> None:
        cols = ", ".join(row)
        self._run(f"INSERT INTO audit_log ({cols}) VALUES ({', '.join('?' for _ in row)})",
                  *row.values())

    def list_audit(self, limit: int = 100, before_id: int | None = None,
                   actor: str | None = None) -> list[dict]:
        """Newest first; ``before_id`` pages back."""
        where: list[str] = []
        args: list[object] = []
        if before_id is not None:
            where.append("id < ?")
            args.append(before_id)
        if actor is not None:
            where.append("actor = ?")
            args.append(actor)
        sql = "SELECT * FROM audit_log" + (" WHERE " + " AND ".join(where) if where else "")
        return self._all(sql + " ORDER BY id DESC LIMIT ?", *args, limit)

    # the portal's overview (services/operations/overview.py) -----------------------------
    def newest_points(self, instance_id: int, type: str, offset: int,
                      limit: int) -> list[dict]:
        """Live points of a type, newest first, ``limit`` from ``offset`` (walked along the
        index recovery_points_newest)."""
        return self._all("SELECT point_id, type, end_time, databases FROM recovery_points "
                         "WHERE instance_id = ? AND type = ? AND deleted_at IS NULL "
                         "ORDER BY end_time DESC, point_id DESC LIMIT ? OFFSET ?",
                         instance_id, type, limit, offset)

    # a fleet: agents, their registration tokens, jobs queued for them (docs/fleet.md) ----
    def add_agent_token(self, row: dict) -> None:
        self._run(f"INSERT INTO agent_tokens ({', '.join(row)}) VALUES "
                  f"({', '.join('?' for _ in row)})", *row.values())

    def use_agent_token(self, token_id: str, now: str, agent_id: str) -> dict | None:
        """Mark an unused, unexpired token used by ``agent_id``, returning it; None when
        it is unknown, used or expired (one statement: a token is traded once)."""
        rows = self._single(lambda s: s.all(
            "UPDATE agent_tokens SET used = ?, agent_id = ? WHERE id = ? AND used IS NULL "
            "AND expires > ? RETURNING *", (now, agent_id, token_id, now)))
        return rows[0] if rows else None

    def get_agent_token(self, token_id: str) -> dict | None:
        return self._one("SELECT * FROM agent_tokens WHERE id = ?", token_id)

    def add_agent(self, row: dict) -> None:
        self._run(f"INSERT INTO agents ({', '.join(row)}) VALUES "
                  f"({', '.join('?' for _ in row)})", *row.values())

    def get_agent(self, agent_id: str) -> dict | None:
        return self._one("SELECT * FROM agents WHERE id = ?", agent_id)

    def list_agents(self) -> list[dict]:
        return self._all("SELECT * FROM agents ORDER BY host, id")

    def update_agent(self, agent_id: str, **fields: object) -> None:
        self._update("agents", "id = ?", fields, agent_id)

    def queue_job(self, row: dict) -> None:
        """Insert a job queued for an agent (state 'queued'), and wake its waiting poll."""
        self._run(f"INSERT INTO jobs ({', '.join(row)}) VALUES "
                  f"({', '.join('?' for _ in row)})", *row.values())
        self.notify_jobs(row.get("agent_id"))

    def claim_job(self, agent_id: str, now: str) -> dict | None:
        """The agent's oldest queued job, now running (claimed by exactly one caller)."""
        rows = self._single(lambda s: s.all(
            "UPDATE jobs SET state = 'running', reported = ? WHERE id = (SELECT id FROM jobs "
            "WHERE agent_id = ? AND state = 'queued' ORDER BY start_time, id LIMIT 1"
            f"{self._SKIP_LOCKED}) AND state = 'queued' RETURNING *", (now, agent_id)))
        return rows[0] if rows else None

    def queued_agents(self) -> list[str]:
        """The agents that have a job queued now."""
        return [r["agent_id"] for r in self._all(
            "SELECT DISTINCT agent_id FROM jobs WHERE state = 'queued' "
            "AND agent_id IS NOT NULL")]

    def lost_jobs(self, before: str) -> list[dict]:
        """Running jobs of agents whose last report on them is older than ``before``."""
        return self._all("SELECT * FROM jobs WHERE agent_id IS NOT NULL AND state IN "
                         "('running', 'cancelling') AND reported < ?", before)

    def fail_job_if_active(self, job_id: str, fields: dict) -> bool:
        """End a queued or running job with ``fields`` (state, error...), unless it ended
        meanwhile: whether it was ended here."""
        sets = ", ".join(f"{k} = ?" for k in fields)
        return self._run(f"UPDATE jobs SET {sets} WHERE id = ? AND state IN "
                         "('queued', 'running', 'cancelling')", *fields.values(), job_id) > 0

    def notify_jobs(self, agent_id: str | None) -> None:
        """Tell the control planes waiting on this catalog that a job was queued for
        ``agent_id`` (a PostgreSQL catalog: NOTIFY; SQLite has only one control plane, told
        in process)."""

    def notify_job_update(self, job_id: str) -> None:
        """Tell the processes following ``job_id`` that an agent wrote it (a PostgreSQL
        catalog: NOTIFY; SQLite's followers look at the row on their own)."""

    def newest_jobs(self, server: str, limit: int = 20) -> list[dict]:
        return self._all("SELECT id, type, state, start_time, end_time, error_code, "
                         "backup_type FROM jobs WHERE server = ? "
                         "ORDER BY start_time DESC LIMIT ?", server, limit)

    def count_jobs_since(self, since: str) -> dict[str, int]:
        """Jobs started since a time, counted by state."""
        return {r["state"]: r["n"] for r in self._all(
            "SELECT state, COUNT(*) AS n FROM jobs WHERE start_time >= ? GROUP BY state",
            since)}

    _JOB_GROUPS = "SELECT type, state, server, agent_id, COUNT(*) AS n FROM jobs "

    def count_jobs_grouped_since(self, since: str) -> list[dict]:
        """Jobs started since a time, counted by type, state, server and agent (one
        query: the dashboard's fleet totals and /metrics)."""
        return self._all(self._JOB_GROUPS + "WHERE start_time >= ? "
                         "GROUP BY type, state, server, agent_id", since)

    def count_live_jobs(self) -> list[dict]:
        """Jobs queued, running or cancelling now, whenever they started, counted by type,
        state, server and agent."""
        return self._all(self._JOB_GROUPS + "WHERE state IN ('queued', 'running', "
                         "'cancelling') GROUP BY type, state, server, agent_id")

    _POINT_SERVER = ("FROM recovery_points p JOIN instances i ON i.id = p.instance_id "
                     "JOIN servers s ON s.id = i.server_id ")

    def stored_by_day(self, since: str) -> list[dict]:
        """Per server and UTC day from ``since`` on: the bytes its points stored that day
        (``added``) and those of its points deleted that day (``removed``); and per server
        the bytes of the points it held when ``since`` began (``day`` None)."""
        added = self._all("SELECT s.name AS server, substr(p.end_time, 1, 10) AS day, "
                          "SUM(p.bytes_stored) AS added " + self._POINT_SERVER +
                          "WHERE p.end_time >= ? GROUP BY s.name, substr(p.end_time, 1, 10)",
                          since)
        removed = self._all("SELECT s.name AS server, substr(p.deleted_at, 1, 10) AS day, "
                            "SUM(p.bytes_stored) AS removed " + self._POINT_SERVER +
                            "WHERE p.deleted_at >= ? "
                            "GROUP BY s.name, substr(p.deleted_at, 1, 10)", since)
        held = self._all("SELECT s.name AS server, NULL AS day, SUM(p.bytes_stored) AS added "
                         + self._POINT_SERVER + "WHERE p.end_time < ? AND "
                         "(p.deleted_at IS NULL OR p.deleted_at >= ?) GROUP BY s.name",
                         since, since)
        return held + added + removed

    def itemised_points(self, since: str) -> list[dict]:
        """The points with what each database takes (``item_usage``) that were live at
        ``since`` or ended after it, oldest first: the reports' usage per database."""
        return self._all("SELECT s.name AS server, p.end_time, p.deleted_at, "
                         "p.bytes_stored, p.item_usage " + self._POINT_SERVER +
                         "WHERE p.item_usage IS NOT NULL AND "
                         "(p.deleted_at IS NULL OR p.deleted_at >= ?) "
                         "ORDER BY p.end_time, p.point_id", since)

    def unitemised_stored(self, since: str) -> list[dict]:
        """Per server, the bytes of its points without ``item_usage`` (log backups, points
        of before): stored from ``since`` on (``added``) and held now (``held``)."""
        return self._all("SELECT s.name AS server, "
                         "SUM(CASE WHEN p.end_time >= ? THEN p.bytes_stored ELSE 0 END) "
                         "AS added, SUM(CASE WHEN p.deleted_at IS NULL THEN p.bytes_stored "
                         "ELSE 0 END) AS held " + self._POINT_SERVER +
                         "WHERE p.item_usage IS NULL AND "
                         "(p.deleted_at IS NULL OR p.end_time >= ?) GROUP BY s.name",
                         since, since)

    def newest_point_by_day(self, since: str) -> list[dict]:
        """Per server, the end of its newest live point of each UTC day from ``since`` on,
        and of its newest before ``since`` (``day`` None): the reports' RPO over time."""
        return self._all("SELECT s.name AS server, NULL AS day, MAX(p.end_time) AS newest "
                         + self._POINT_SERVER + "WHERE p.end_time < ? AND "
                         "p.deleted_at IS NULL GROUP BY s.name", since) + \
            self._all("SELECT s.name AS server, substr(p.end_time, 1, 10) AS day, "
                      "MAX(p.end_time) AS newest " + self._POINT_SERVER +
                      "WHERE p.end_time >= ? AND p.deleted_at IS NULL "
                      "GROUP BY s.name, substr(p.end_time, 1, 10)", since)

    def jobs_by_day(self, since: str) -> list[dict]:
        """Jobs started from ``since`` on, counted per UTC day and state."""
        return self._all("SELECT substr(start_time, 1, 10) AS day, state, COUNT(*) AS n "
                         "FROM jobs WHERE start_time >= ? "
                         "GROUP BY substr(start_time, 1, 10), state", since)

    def stored_bytes(self) -> int:
        """The bytes the live points added to the vault, summed (each point's new bytes)."""
        row = self._one("SELECT COALESCE(SUM(bytes_stored), 0) AS n FROM recovery_points "
                        "WHERE deleted_at IS NULL")
        return int(row["n"]) if row else 0


def _job_filter(since: str | None, until: str | None, equal: dict[str, object]
                ) -> tuple[str, list[object]]:
    """The WHERE clause of a job listing and its arguments (column names come from code,
    never from a caller: services/fleet/scope.py lists what an agent may filter by)."""
    terms = [f"{k} = ?" for k, v in equal.items() if v is not None]
    args: list[object] = [v for v in equal.values() if v is not None]
    for term, value in (("start_time >= ?", since), ("start_time < ?", until)):
        if value is not None:
            terms.append(term)
            args.append(value)
    return (" WHERE " + " AND ".join(terms) if terms else ""), args
