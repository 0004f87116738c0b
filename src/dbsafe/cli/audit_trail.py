"""The CLI's changes go into the audit log too (the API's gate writes the API's and the
portal's): who (``cli:<OS user>``), what (the command line — secrets never appear on it:
passphrases and passwords come from the environment or a prompt), when, from where
(``cli@<host>``) and the outcome (``ok`` or the error code).

A command is a change unless it only reads: listings, ``show``, ``status``, ``points``,
``jobs``, ``plan``, ``verify``, ``serve`` (whose own changes are audited by the API), and a
group named alone (``dbsafe alerts`` lists; the others print their help).

The line goes into the catalog alone, opened without reaching the repository: a command run
while the repository is away (an object store down) must not wait on it a second time, for
minutes of retries, to say what it did."""

from __future__ import annotations

import socket

GROUPS = {"vault", "key", "server", "agent", "policy", "replicaset", "job", "alerts", "drill",
          "token", "user"}
READS = {"items", "points", "verify", "jobs", "serve", "drills", "plan", "audit", "list", "show",
         "status", "info", "region", "check", "test"}
SUBGROUPS = {("alerts", "channel"), ("replicaset", "node"), ("agent", "token"),
             ("vault", "restore-roots")}
GLOBAL_OPTIONS_WITH_VALUE = {"--vault"}


def command_of(argv: list[str]) -> list[str]:
    """The command's words (``["server", "add"]``, ``["alerts", "channel", "list"]``), global
    options skipped."""
    words: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in GLOBAL_OPTIONS_WITH_VALUE:
            skip = True
        elif arg.startswith("-"):
            if not words:
                continue
            break
        else:
            words.append(arg)
            if words[0] not in GROUPS or len(words) == 3 \
                    or len(words) == 2 and tuple(words) not in SUBGROUPS:
                break
    return words


def is_change(argv: list[str]) -> bool:
    words = command_of(argv)
    if not words or "--help" in argv or len(words) == 1 and words[0] in GROUPS \
            or tuple(words) in SUBGROUPS:
        return False
    return words[-1] not in READS


def record(argv: list[str], outcome: str) -> None:
    """Write the audit line; never fails the command (no vault yet: nothing to record in)."""
    from dbsafe.cli.context import open_records
    from dbsafe.services import operations

    try:
        catalog = open_records()
        operations.audit(catalog, operations.cli_principal(), f"cli@{socket.gethostname()}",
                         " ".join(command_of(argv)), None, outcome, {"argv": argv})
        catalog.close()
    except Exception:  # noqa: BLE001 - the command's own result stands either way
        pass
