"""`dbsafe server add`'s refusals in the words of the servers page's "Add a server" form.

The registry's messages (core/errors.py) are written for the command line: they name its
options (``--port``, ``--host``, ``--bin-dir``) and commands. Beside the form, the same
refusal names the form's fields instead. The code stays the registry's and is shown with
it, so the portal, the API and the CLI refuse the same thing with the same code; only the
sentence differs, and only for the codes whose registry message names the command line (the
others, such as ``server.pgdata_registered`` or ``server.deployment_unsupported``, read well
as they are)."""

from __future__ import annotations

from collections.abc import Callable

from dbsafe.core.errors import DbsafeError

CONTRIBUTOR_AT_THE_CLI = ("have a Backup Contributor register the server at the command line "
                          "with the folder of its programs")

WORDS: dict[str, Callable[[dict], str]] = {
    "server.exists": lambda d: f"a server named {d['name']!r} is already registered: "
                               "choose another name",
    "server.pgdata_missing": lambda d: (
        f"PostgreSQL's programs (pg_ctl) for {d['pgdata']} are not in their usual folder "
        f"on this host: install its packages, or {CONTRIBUTOR_AT_THE_CLI}"
        if "pg_ctl" in str(d.get("reason", "")) else
        f"{d['pgdata']} is not a PostgreSQL data directory ({d['reason']}): give the "
        "folder that holds PG_VERSION and global/"),
    "server.not_running": lambda d: f"PostgreSQL in {d['pgdata']} is not running "
                                    f"({d['reason']}): start it, then add it again",
    "server.wrong_port": lambda d: f"the cluster in {d['pgdata']} listens on port "
                                   f"{d['actual']}, not {d['given']}: give port {d['actual']}",
    "server.connect_failed": lambda d: f"cannot connect to PostgreSQL on port {d['port']}: "
                                       f"{d['reason']}; check the host and the port, and "
                                       f"that pg_hba.conf lets user {d['user']!r} in",
    "server.bin_dir_unsafe": lambda d: f"dbsafe will not run PostgreSQL's programs from "
                                       f"{d['bin_dir']}: {d['path']}: {d['reason']}; only "
                                       "root may be able to change a program dbsafe runs: "
                                       "install PostgreSQL's packages, or "
                                       + CONTRIBUTOR_AT_THE_CLI + " (one only root can change)",
}


def said(error: DbsafeError) -> str:
    """``error``'s message as the form says it (the registry's own for other codes, and
    for an error rebuilt from an agent's job row, which carries no details)."""
    words = WORDS.get(error.code)
    try:
        return words(error.details) if words else error.message
    except KeyError:
        return error.message
