"""Connections to a registered instance (psycopg 3)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from dbsafe.core.errors import DbsafeError

if TYPE_CHECKING:
    import psycopg


def default_user() -> str:
    return os.environ.get("PGUSER", "postgres")


def connect(port: int, host: str | None, dbname: str = "postgres") -> psycopg.Connection:
    """An autocommit connection; ``host`` is a socket folder or a host name."""
    import psycopg  # imported here: commands that never connect start faster

    user = default_user()
    try:
        return psycopg.connect(host=host, port=port, dbname=dbname, user=user,
                               autocommit=True, connect_timeout=10,
                               application_name="dbsafe")
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown"
        raise DbsafeError("server.connect_failed", port=port, reason=reason, user=user) from None
