"""Table-level restore from an instant instance (docs/instant-access.md, *Restoring a
table*): a table as it was before a bad UPDATE, under a new name, and a dropped table under
its own, into the live source while writers run on it; the refusals."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import Pg, allow_restores, new_cluster
from test_database_restore import _tables, _Writer

from dbsafe.services.access import fuse_problem

pytestmark = pytest.mark.skipif(fuse_problem() is not None,
                                reason=f"instant access needs FUSE: {fuse_problem()}")

SETUP = [
    "CREATE TABLE accounts (id int PRIMARY KEY, owner text UNIQUE, balance numeric)",
    "INSERT INTO accounts SELECT g, md5(g::text), g * 10 FROM generate_series(1, 5000) g",
    "CREATE TABLE orders (id serial PRIMARY KEY, account int REFERENCES accounts, "
    "note text)",
    "INSERT INTO orders (account, note) SELECT g % 5000 + 1, 'n' || g "
    "FROM generate_series(1, 3000) g",
    "CREATE INDEX orders_note ON orders (note)",
]


def _sequence_next(pg: Pg, db: str, table: str) -> int:
    return int(pg.scalar(f"SELECT nextval(pg_get_serial_sequence('{table}', 'id'))", db))


def test_tables_come_back_into_the_live_source(pg_template, area, wal_vault):
    vault = wal_vault
    allow_restores(vault.path, area)  # instances run below a restore root
    src = new_cluster(pg_template, area, "src")
    src.execute("CREATE DATABASE app")
    for sql in SETUP:
        src.execute(sql, "app")
    vault.add_server("src", src)
    vault.ok("protect", "src", "--all", "--restart")
    full = vault.backup("src")["point_id"]
    src.execute("UPDATE accounts SET balance = balance + 1 WHERE id % 7 = 0", "app")
    src.execute("INSERT INTO orders (account, note) VALUES (1, 'after the full')", "app")
    time.sleep(0.2)
    instant = src.scalar("SELECT clock_timestamp()").isoformat()
    expected = _tables(src, "app")
    time.sleep(0.2)
    src.execute("UPDATE accounts SET balance = 0", "app")  # the bad deploy
    src.execute("DROP TABLE orders", "app")
    vault.backup("src", "--type", "log")

    with _Writer(src, "app") as writer:
        before = vault.ok("restore", "src", "--db", "app", "--table", "public.accounts",
                          "--time", instant, "--target-server", "src",
                          "--as", "accounts_before")
        dropped = vault.ok("restore", "src", "--db", "app", "--table", "orders",
                           "--time", instant, "--target-server", "src")
        assert writer.count > 0
    assert before["tables"] == [{"table": "public.accounts",
                                 "restored_as": "public.accounts_before"}]
    assert before["owners_kept"] is True and before["note"] is None
    assert dropped["tables"] == [{"table": "public.orders", "restored_as": "public.orders"}]
    now = _tables(src, "app")
    assert now["accounts_before"] == expected["accounts"]
    assert now["orders"] == expected["orders"]
    assert now["accounts"] != expected["accounts"]  # the live one untouched
    # what belongs to the tables came with them, renamed where the table was
    indexes = {r[0] for r in src.execute(
        "SELECT indexname FROM pg_indexes WHERE tablename IN ('accounts_before', 'orders')",
        "app")}
    assert {"accounts_before_pkey", "accounts_before_owner_key", "orders_pkey",
            "orders_note"} <= indexes
    # its owned sequence came too, past every id (recovery may skip ahead: up to 32 values
    # are logged at once)
    assert 3001 < _sequence_next(src, "app", "orders") <= 3001 + 33
    assert src.scalar("SELECT count(*) FROM pg_constraint WHERE conname = "
                      "'orders_account_fkey'", "app") == 1

    # refusals: nothing replaced, nothing unknown restored
    vault.fail("restore.table_exists", "restore", "src", "--db", "app", "--table",
               "accounts", "--time", instant, "--target-server", "src")
    vault.fail("restore.table_unknown", "restore", "src", "--db", "app", "--table",
               "public.nope", "--time", instant, "--target-server", "src", "--as", "x")
    vault.fail("restore.table_as_many", "restore", "src", "--db", "app", "--table", "a",
               "--table", "b", "--time", instant, "--target-server", "src", "--as", "x")
    # what an instance fetched is counted to its end (a table restore's once stopped at
    # its instance's start, before the dump read anything)
    opened = vault.ok("instant", "src", "--point", full)  # no replay: accounts unread
    Pg(pgdata=Path(opened["mountpoint"]), port=opened["port"],
       sockdir=Path(opened["socket_dir"])).scalar("SELECT count(*) FROM accounts", "app")
    ended = vault.ok("instant", "stop", opened["id"])
    assert ended["fetched_bytes"] > opened["fetched_bytes"] > 0
    assert before["fetched_bytes"] > 0
    # every instance the restores started is gone, and its folders with it
    assert vault.ok("instant", "list") == []
    assert not list(area.glob("instant-*"))
