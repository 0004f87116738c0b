"""The environment of every process dbsafe starts: an allow-list, never dbsafe's own.

dbsafe holds secrets in its environment (``DBSAFE_PASSPHRASE``, ``AWS_SECRET_ACCESS_KEY``,
``AZURE_STORAGE_KEY``, ``PGPASSWORD`` …). A PostgreSQL server it starts would inherit them,
and any database superuser reads a server's environment with
``pg_read_file('/proc/self/environ')``; the archive and restore commands the server runs
inherit it in turn. So a child gets only what it needs, built here from nothing:

- ``server_env``: a PostgreSQL server (pg_ctl start/restart/stop, and through it the
  postmaster): a fixed ``PATH``, the locale and time zone variables, the owner's ``HOME``;
- ``client_env``: a PostgreSQL client program (pg_dump, pg_restore): the same plus libpq's
  connection variables (``PGPASSWORD`` among them: the program must log in), never
  ``PGOPTIONS`` (server options a caller could smuggle in);
- ``tool_env``: any other program (findmnt, pg_lsclusters, the C compiler): the server's.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
LOCALE_VARS = ("LANG", "LANGUAGE", "TZ")
LIBPQ_VARS = ("PGHOST", "PGHOSTADDR", "PGPORT", "PGUSER", "PGPASSWORD", "PGPASSFILE",
              "PGSERVICE", "PGSERVICEFILE", "PGSSLMODE", "PGSSLROOTCERT", "PGSSLCERT",
              "PGSSLKEY", "PGSSLCRL", "PGSSLCRLDIR", "PGSSLSNI", "PGREQUIRESSL",
              "PGGSSENCMODE", "PGKRBSRVNAME", "PGCONNECT_TIMEOUT", "PGCLIENTENCODING",
              "PGTARGETSESSIONATTRS", "PGCHANNELBINDING", "PGREQUIREAUTH")


def _locale(source: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in source.items() if k in LOCALE_VARS or k.startswith("LC_")}


def server_env(home: str | None = None, source: Mapping[str, str] | None = None
               ) -> dict[str, str]:
    """For a PostgreSQL server and the commands it runs: no secret of dbsafe's."""
    env = {"PATH": SAFE_PATH, **_locale(os.environ if source is None else source)}
    if home:
        env["HOME"] = home
    return env


def client_env(home: str | None = None, source: Mapping[str, str] | None = None
               ) -> dict[str, str]:
    """For a PostgreSQL client program: a server's, plus libpq's connection variables."""
    source = os.environ if source is None else source
    return {**server_env(home, source), **{k: source[k] for k in LIBPQ_VARS if k in source}}


def tool_env() -> dict[str, str]:
    """For any other program dbsafe runs."""
    return server_env()
