"""Connections to a registered instance (psycopg 3): the one door every connection to a
cluster goes through.

A stock Debian cluster lets its owner in through the Unix socket by ``peer``
authentication only (``local all postgres peer``): the server asks the kernel who connected
(SO_PEERCRED, fixed when the client called connect()) and takes that OS user for the
database user. dbsafe running as root is then refused as ``postgres``. So when root's own
connection over a socket fails, dbsafe connects again as the OS user that runs the server
(who owns the socket, and the data directory: PostgreSQL runs as no one else), from a
thread made for that one connect() whose *effective* user id alone is that user's
(``_threadcred``); the connection is an ordinary one of this process afterwards.
pg_hba.conf is never changed. docs/discovery-and-limits.md, *Peer authentication*, says
why this and not a relay process.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import stat
import threading
from typing import TYPE_CHECKING, Any

from dbsafe.core.errors import DbsafeError

if TYPE_CHECKING:
    import psycopg
    from psycopg.rows import Row

_as_owner_first: set[str] = set()  # sockets whose server let only its owner in, this process
_lock = threading.Lock()


def one_row(cursor: psycopg.Cursor[Row]) -> Row:
    """The row of a query that always returns one (a function call, an aggregate, a
    setting); LookupError if it returned none."""
    row = cursor.fetchone()
    if row is None:
        raise LookupError("the query returned no row")
    return row


def default_user() -> str:
    return os.environ.get("PGUSER", "postgres")


def connect(port: int, host: str | None, dbname: str = "postgres") -> psycopg.Connection:
    """An autocommit connection; ``host`` is a socket folder or a host name."""
    import psycopg  # imported here: commands that never connect start faster

    user = default_user()
    params: dict[str, Any] = {"host": host, "port": port, "dbname": dbname, "user": user,
                              "autocommit": True, "connect_timeout": 10,
                              "application_name": "dbsafe"}
    socket_path, owner_uid = _socket_owner(host, port)
    attempts: list[int | None]
    if owner_uid is None:
        attempts = [None]
    elif socket_path in _as_owner_first:
        attempts = [owner_uid, None]
    else:
        attempts = [None, owner_uid]
    reasons: dict[str, str] = {}  # why each attempt failed, the same reason once
    for uid in attempts:
        try:
            conn = psycopg.connect(**params) if uid is None else _connect_as(uid, params)
        except psycopg.OperationalError as exc:
            reasons.setdefault(_reason(exc), _as_whom(uid))
            continue
        if uid is not None and socket_path is not None:  # a uid: the socket's owner's
            with _lock:
                _as_owner_first.add(socket_path)
        return conn
    raise DbsafeError("server.connect_failed", port=port, user=user, reason="; ".join(
        f"{whom}{reason}" for reason, whom in reasons.items()))


def _socket_owner(host: str | None, port: int) -> tuple[str | None, int | None]:
    """The server's socket and the uid that runs the server, when dbsafe runs as root and
    the server is another user's and reached through a socket folder; else (path, None)."""
    if os.geteuid() != 0 or not host or not os.path.isabs(host):
        return None, None
    path = os.path.join(host, f".s.PGSQL.{port}")
    try:
        st = os.lstat(path)
    except OSError:
        return path, None
    if not stat.S_ISSOCK(st.st_mode) or st.st_uid == 0:
        return path, None
    return path, st.st_uid


def _connect_as(uid: int, params: dict) -> psycopg.Connection:
    """``psycopg.connect`` from a thread of its own whose effective user id is ``uid`` for
    that call alone (the thread ends with it: no other code ever runs with that id, not
    even a signal handler, which Python runs in the main thread only)."""
    import psycopg

    from dbsafe.engines.postgres._threadcred import set_thread_euid

    outcome: dict = {}

    def run() -> None:
        try:
            set_thread_euid(uid)
        except OSError as exc:
            outcome["error"] = exc
            return
        try:
            outcome["conn"] = psycopg.connect(**params)
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc
        finally:
            with contextlib.suppress(OSError):  # the thread ends here anyway
                set_thread_euid(0)

    thread = threading.Thread(target=run, name="dbsafe-connect-as-owner", daemon=True)
    thread.start()
    thread.join()
    if "conn" in outcome:
        return outcome["conn"]
    error = outcome["error"]
    if isinstance(error, OSError):
        raise psycopg.OperationalError(f"cannot take user id {uid}: {error}")
    raise error


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[-1] if text else "unknown"


def _as_whom(uid: int | None) -> str:
    if uid is None:
        return ""
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = f"uid {uid}"
    return f"as the server's OS user {name}: "
