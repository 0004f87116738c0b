"""Bounds on what the interfaces take (ports, counts, ids, names, paths), the same for the
command line (Typer's ``min``/``max`` and ``name_option``/``path_option`` callbacks) and the
REST API (pydantic's ``Field``). They are checked at the edge, before any work: a value out
of range is a usage error, never an ``OverflowError`` deep in a restore or a folder of data
written for a server that cannot start.

Plain constants and checks, nothing heavy to import: every ``dbsafe`` call reads them.
"""

from __future__ import annotations

import re

from dbsafe.core.path_rules import MAX_PART, MAX_PATH

PORT = (1, 65535)
# A restored cluster is started by its owner (postgres), who may not bind a port below 1024.
RESTORE_PORT = (1024, 65535)
WORKERS = (1, 256)          # threads of one backup or restore
LIST_LIMIT = (1, 1000)      # rows of one listing (jobs, drills, audit)
REPORT_DAYS = (1, 366)      # the days a report covers (a year, and a leap day)
ROW_ID = (1, 2**62)         # catalog row ids (alerts, channels): SQLite integers
WAIT_SECONDS = (0, 86400)   # a command waiting for something else: at most a day
RUNS_AT_A_TIME = (1, 1000)  # serve's --max-per-server and --max-total, a server's own
# alert thresholds (`dbsafe alerts check`, POST /alerts/check)
LAG_MIB = (1, 1 << 30)
FREE_PCT = (0, 100)
FREE_MIB = (0, 1 << 40)
# the resource planner's inputs (`dbsafe plan`, POST /planner)
PLAN = {"cores": (1, 4096), "bandwidth_mbps": (0.01, 1e7), "db_count": (1, 100_000),
        "db_size_gb": (0.001, 1e6), "change_rate_pct": (0, 100), "window_hours": (0.01, 24),
        "instances": (1, 100_000), "wal_gb_per_day": (0, 1e6), "disk_mb_s": (0.01, 1e7)}
# The names a user gives servers, replica sets and policies.
NAME_MAX = 63
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
_NAME = re.compile(NAME_PATTERN)
# The names of portal users and API tokens.
ACCOUNT_MAX = 100
ACCOUNT_PATTERN = r"^[A-Za-z0-9_.@-]+$"
_ACCOUNT = re.compile(ACCOUNT_PATTERN)


def name_problem(name: str) -> str | None:
    """What is wrong with ``name`` as a server, replica set or policy name, or None."""
    if not 1 <= len(name) <= NAME_MAX:
        return f"a name has 1 to {NAME_MAX} characters"
    if not _NAME.match(name):
        return "a name starts with a letter or digit and holds only letters, digits and ._-"
    return None


def account_problem(name: str) -> str | None:
    """What is wrong with ``name`` as a user's or token's name, or None."""
    if not 1 <= len(name) <= ACCOUNT_MAX or not _ACCOUNT.match(name):
        return f"a name has 1 to {ACCOUNT_MAX} letters, digits and _.@-"
    return None


def path_problem(path: str) -> str | None:
    """What the file systems would refuse in ``path`` (too long, a part over 255 bytes, a NUL
    byte), or None: an OSError deep in the work otherwise."""
    if len(path.encode()) > MAX_PATH:
        return f"a path has at most {MAX_PATH} bytes"
    if "\x00" in path:
        return "a path holds no NUL byte"
    if any(len(part.encode()) > MAX_PART for part in path.split("/")):
        return f"a part of a path has at most {MAX_PART} bytes"
    return None
