"""Every time the catalog holds carries its zone: the ones it stamps itself (a server's
creation, a database's discovery, an item's protection, a replica set's creation and its
nodes' addition) are ISO 8601 with ``+00:00``, and migration 0013 rewrites the ones it
stamped before as 'YYYY-MM-DD HH:MM:SS' (UTC, unsaid), which every listing showed so."""

from __future__ import annotations

import sqlite3
from datetime import datetime

from dbsafe.catalog.sql import migrations, statements
from dbsafe.catalog.sqlite import SqliteCatalog

INSTANCE = {"pgdata": "/srv/pg", "port": 5432, "bin_dir": "/usr/lib/postgresql/15/bin",
            "pg_version": 15, "system_identifier": "1"}
OLD = "2026-12-05 17:05:00"


def _zoned(text: str) -> bool:
    return datetime.fromisoformat(text).utcoffset() is not None


def _stamp_everything(catalog: SqliteCatalog) -> int:
    iid = catalog.add_server("main", "host", None, INSTANCE)
    catalog.replace_databases(iid, [{"name": "app", "oid": 16384, "size_bytes": 1,
                                     "file_count": 1, "read_only": False, "kind": "user"}])
    catalog.protect_items(iid, [("app", 16384)], None)
    catalog.add_replica_set("rs", "primary")
    catalog.add_node("rs", "main")
    return iid


def _times(path) -> dict[str, str]:
    db = sqlite3.connect(path)
    try:
        return {what: db.execute(sql).fetchone()[0] for what, sql in (
            ("server", "SELECT created FROM servers"),
            ("database", "SELECT discovered FROM databases"),
            ("item", "SELECT since FROM protected_databases"),
            ("set", "SELECT created FROM replica_sets"),
            ("node", "SELECT added FROM replica_set_nodes"))}
    finally:
        db.close()


def test_the_catalog_stamps_times_with_their_zone(tmp_path):
    catalog = SqliteCatalog(tmp_path / "catalog.db")
    iid = _stamp_everything(catalog)
    assert _zoned(catalog.get_server("main")["created"])
    assert _zoned(catalog.list_items(iid)[0]["since"])
    catalog.close()
    times = _times(tmp_path / "catalog.db")
    assert all(_zoned(t) and t.endswith("+00:00") for t in times.values()), times


def test_times_stamped_before_get_their_zone(tmp_path):
    path = tmp_path / "catalog.db"
    db = sqlite3.connect(path)
    for number, script in migrations():
        if number < 13:
            for statement in statements(script):
                db.execute(statement)
            db.execute(f"PRAGMA user_version={number}")
    db.commit()
    db.close()
    catalog = SqliteCatalog(path)  # stamps in the new form; the old form is put back below
    _stamp_everything(catalog)
    catalog.close()
    db = sqlite3.connect(path)
    for table, column in (("servers", "created"), ("databases", "discovered"),
                          ("protected_databases", "since"), ("replica_sets", "created"),
                          ("replica_set_nodes", "added")):
        db.execute(f"UPDATE {table} SET {column} = ?", (OLD,))  # noqa: S608 - fixed names
    for statement in statements(dict(migrations())[13]):  # 0013 again, on the old form
        db.execute(statement)
    db.commit()
    db.close()
    assert set(_times(path).values()) == {"2026-12-05T17:05:00+00:00"}
