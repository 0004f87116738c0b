"""The SQLite catalog (WAL mode): one file beside the repository, migrated on open.

Migrations are the numbered ``migrations/NNNN_*.sql`` scripts; ``PRAGMA user_version`` holds
the last one applied, and each is applied in its own transaction. One connection serves
every thread (under a lock); ``BEGIN IMMEDIATE`` makes read-modify-writes atomic across
processes, as SQLite takes its write lock at the start of such a transaction.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from dbsafe.catalog.sql import Session, SqlCatalog, T, check_lock_name, migrations, statements
from dbsafe.core.errors import DbsafeError

PAGE = 4096  # SQLite's page: what a write to a full catalog needs at least


class _SqliteSession:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def all(self, sql: str, args: tuple = ()) -> list[dict]:
        return [dict(r) for r in self.db.execute(sql, args).fetchall()]

    def run(self, sql: str, args: tuple = ()) -> int:
        return self.db.execute(sql, args).rowcount

    def many(self, sql: str, rows: list[tuple]) -> int:
        return self.db.executemany(sql, rows).rowcount

    def insert_id(self, sql: str, args: tuple = ()) -> int:
        rowid = self.db.execute(sql, args).lastrowid
        assert rowid is not None  # an INSERT sets it
        return int(rowid)


def _wal_mode(db: sqlite3.Connection, seconds: float = 30.0) -> None:
    """Put the catalog in WAL mode (once: the mode is kept in the file). Processes opening
    a new catalog at once race to switch it, and SQLite answers the loser "database is
    locked" at once, without waiting in its busy handler (the switch upgrades a shared lock
    that the others hold too): so it is tried again, for as long as a busy wait lasts."""
    deadline = time.monotonic() + seconds
    delay = 0.005
    while True:
        try:
            if db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)


class SqliteCatalog(SqlCatalog):
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        if not self.path.exists():  # its owner's alone; SQLite gives its -wal, -shm the same
            with contextlib.suppress(FileExistsError):
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30,
                                   isolation_level=None)
        self._db.row_factory = sqlite3.Row
        _wal_mode(self._db)
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._s = _SqliteSession(self._db)
        self._migrate()

    def _migrate(self) -> None:
        with self._lock:
            current = self._db.execute("PRAGMA user_version").fetchone()[0]
            for number, script in migrations():
                if number > current:
                    self._atomic(functools.partial(self._apply, number, script))

    @staticmethod
    def _apply(number: int, script: str, s: Session) -> None:
        if s.all("PRAGMA user_version")[0]["user_version"] >= number:
            return  # another process applied it while this one waited for the write lock
        for statement in statements(script):
            s.run(statement)
        s.run(f"PRAGMA user_version={number}")

    def close(self) -> None:
        self._db.close()

    def describe(self) -> dict:
        return {"backend": "sqlite", "location": str(self.path)}

    @contextlib.contextmanager
    def _space(self) -> Iterator[None]:
        """SQLite's "database or disk is full" as ``vault.full``: the catalog is the vault's
        too, and its file system the one a full backup or WAL archiving filled."""
        try:
            yield
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorcode", None) != sqlite3.SQLITE_FULL:
                raise
            st = os.statvfs(self.path.parent)
            raise DbsafeError("vault.full", path=self.path.parent, what="writing the catalog",
                              need=PAGE, free=st.f_bavail * st.f_frsize) from exc

    def _single(self, body: Callable[[Session], T]) -> T:
        with self._lock, self._space():
            return body(self._s)

    def _atomic(self, body: Callable[[Session], T], lock: str | None = None) -> T:
        # BEGIN IMMEDIATE locks the whole database for writing: ``lock`` needs nothing more
        with self._lock, self._space():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                result = body(self._s)
                self._db.execute("COMMIT")
                return result
            except BaseException:
                if self._db.in_transaction:  # SQLite ends it itself on some errors (disk full)
                    self._db.execute("ROLLBACK")
                raise

    @contextlib.contextmanager
    def exclusive(self, name: str) -> Iterator[None]:
        """Hold the lock ``name`` of this catalog (an flock on a file beside it) for the
        block; DbsafeError catalog.busy when another process, or another holder in this
        one, has it. The lock ends with the block or with its holder's process."""
        fd = os.open(self.path.with_name(f"{self.path.name}.{check_lock_name(name)}.lock"),
                     os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise DbsafeError("catalog.busy", name=name, location=self.path) from None
            yield
        finally:
            os.close(fd)
