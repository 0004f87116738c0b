"""The support matrix's limits, held at protection and at registration.

Each constant names the row of ``reference/azure-sql-vm-backup-support-matrix.md`` it comes
from, or says where dbsafe goes beyond it. Two item limits can be set by an administrator
in the environment of every dbsafe process that protects databases (the CLI, ``dbsafe
serve`` for the portal, the API and auto-protection):

- ``DBSAFE_MAX_ITEMS_PER_SERVER``: 2,000 (the support figure) unless set; it may be lowered,
  or raised up to the per-vault limit (20,000);
- ``DBSAFE_MAX_ITEMS_PER_VAULT``: 20,000 unless set; it may only be lowered.

A lower cap is a site's own choice (and lets tests hit a limit without creating 2,000
databases). A value that is not a whole number, or above what the variable allows, is not
used: the limit is the default (not a number) or the highest allowed (too large), and a
warning says so (``_setting``). docs/discovery-and-limits.md lists them all.
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
from pathlib import Path

from dbsafe.core.child_env import tool_env
from dbsafe.core.errors import DbsafeError
from dbsafe.services.handle.vault_handle import Vault

log = logging.getLogger("dbsafe.limits")

MAX_ITEMS_PER_SERVER = 2000
"""Feature considerations and limitations: "Number of databases that can be protected in a
server (and in a vault) | 2000". The default per server; ``DBSAFE_MAX_ITEMS_PER_SERVER``
may raise it up to ``MAX_ITEMS_PER_VAULT`` (one server holding every database of the
vault) or lower it (``max_items_per_server``)."""

MAX_ITEMS_PER_VAULT = 20_000
"""The same row says 2,000 per vault; dbsafe holds ten times that: 20,000 protected
databases in one vault (e.g. ten servers of 2,000). bench/vault_scale.py measures it on a
seeded vault of 10 x 2,000 databases with 90 days of points against 1 x 2,000: listing
(``dbsafe server list``, ``items``, ``points``), the scheduler's planning pass, the health
check's backup-age part, retention over every server, and the portal and API lists
(bench/portal_load.py); docs/discovery-and-limits.md, *Limits*, gives the figures.
``DBSAFE_MAX_ITEMS_PER_VAULT`` may only lower it (``max_items_per_vault``)."""

MAX_DATABASE_BYTES = 2 * 1024**4
"""Feature considerations and limitations: "Database size supported (beyond this,
performance issues may come up) | 2 TB". Larger databases are protected, with a warning."""

FILES_PER_DATABASE_FLOOR = 1000
"""Feature considerations and limitations: "Number of files supported in a database |
1000". A floor, not a cap: dbsafe refuses nothing for it; its tested figure is in
docs/discovery-and-limits.md (tests/integration/test_limits.py backs up and restores a
database of over 12,000 files)."""

MAX_PER_REQUEST = 50
"""Not a support-matrix row but the seed service's companion guide ("Back up SQL Server
databases in Azure VMs"): "Azure Backup sets a maximum number of databases in one backup
job to 50. To protect more than 50 databases, configure multiple backups", or enable
auto-protection (which keeps the rule)."""

TESTED_OS = {("debian", "12"): "Debian 12 (bookworm)"}
"""Scenario support: "Supported operating systems". What dbsafe's test suite runs on:
Debian 12 with the postgresql-common layout. Another Linux system is accepted with a
warning that says so (``server.os_untested``)."""

OS_RELEASE_FILES = ("/etc/os-release", "/usr/lib/os-release")
"""Where the system says what it is (os-release(5): the first that exists)."""

NETWORK_FILESYSTEMS = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "ceph", "fuse.ceph", "glusterfs",
    "fuse.glusterfs", "lustre", "afs", "gpfs", "ocfs2", "gfs2", "fuse.sshfs", "davfs",
    "fuse.s3fs", "fuse.rclone", "fuse.juicefs", "beegfs"})
"""Shared or network storage: the PostgreSQL side of the seed's "Failover Cluster Instance
(FCI) isn't supported" (an instance on shared storage moves between hosts)."""

OVERLAY_FILESYSTEMS = frozenset({"overlay", "aufs", "unionfs", "fuse-overlayfs",
                                 "fuse.fuse-overlayfs"})
"""A container's copy-on-write layer: the data goes with the container. The seed supports
VM deployments only ("Supported deployments": Marketplace and manually installed VMs)."""


def max_items_per_server() -> int:
    """The per-server limit: ``DBSAFE_MAX_ITEMS_PER_SERVER`` if set (lower or higher than
    ``MAX_ITEMS_PER_SERVER``, at most ``MAX_ITEMS_PER_VAULT``), else the default."""
    return _setting("DBSAFE_MAX_ITEMS_PER_SERVER", MAX_ITEMS_PER_SERVER, MAX_ITEMS_PER_VAULT)


def max_items_per_vault() -> int:
    """The per-vault limit: ``DBSAFE_MAX_ITEMS_PER_VAULT`` if set and lower than
    ``MAX_ITEMS_PER_VAULT`` (it cannot raise it), else ``MAX_ITEMS_PER_VAULT``."""
    return _setting("DBSAFE_MAX_ITEMS_PER_VAULT", MAX_ITEMS_PER_VAULT, MAX_ITEMS_PER_VAULT)


_warned: set[tuple[str, str]] = set()  # (variable, value) already warned about


def _setting(variable: str, default: int, highest: int) -> int:
    """The limit ``variable`` sets: a whole number from 0 to ``highest``; unset or empty,
    ``default``.

    A value that breaks the rule is refused, with a warning logged once per process and
    value (the CLI prints it on stderr, ``dbsafe serve`` in its log): not a whole number,
    the default; above ``highest``, ``highest``. Why not an error: the registry
    (core/errors.py) has no code for a bad setting in the environment. ``usage.invalid``
    is the command line's own (its message sends to ``--help``, which does not list this
    variable, and the API would answer 400, blaming the caller for the host's setting),
    and ``limit.*`` say that a request broke a limit. An error would also stop, besides
    ``protect``, every discovery of ``dbsafe serve`` (auto-protection reads the limits)
    for a setting that only caps. Falling back is safe both ways: the default is what
    dbsafe has always held, and a per-server limit above the per-vault one never lets more
    in, since both are checked.
    """
    value = os.environ.get(variable, "").strip()
    if not value:
        return default
    if value.isascii() and value.isdigit():
        if int(value) <= highest:
            return int(value)
        limit, why = highest, f"above {highest:,}, the most it may be"
    else:
        limit, why = default, "not a whole number"
    if (variable, value) not in _warned:
        _warned.add((variable, value))
        log.warning("%s=%r is refused (%s): the limit is %s; set a whole number from 0 to "
                    "%s, or unset it for %s (docs/discovery-and-limits.md, Limits)",
                    variable, value, why, f"{limit:,}", f"{highest:,}", f"{default:,}")
    return limit


# protection -------------------------------------------------------------------------------

def check_protect(vault: Vault, server: dict, new_names: list[str], auto: bool) -> list[str]:
    """Refuse a protect request that breaks a limit; return its warnings (large databases).

    ``new_names`` are the databases the request protects; names already protected (any
    active state) do not count again. ``auto``: the request comes from auto-protection,
    which is not bound by MAX_PER_REQUEST.
    """
    names = list(dict.fromkeys(new_names))
    if not auto and len(names) > MAX_PER_REQUEST:
        raise DbsafeError("limit.per_request", count=len(names), limit=MAX_PER_REQUEST,
                          name=server["name"])
    adding = len(names) - len(set(names) & _active_names(vault, server))
    if adding:
        count = vault.catalog.count_items(server["instance_id"])
        limit = max_items_per_server()
        if count + adding > limit:
            raise DbsafeError("limit.items_per_server", name=server["name"], limit=limit,
                              count=count, adding=adding)
        count = vault.catalog.count_items()
        limit = max_items_per_vault()
        if count + adding > limit:
            raise DbsafeError("limit.items_per_vault", limit=limit, count=count,
                              adding=adding)
    return size_warnings(vault, server, names)


def room(vault: Vault, server: dict) -> int:
    """How many more databases of ``server`` may be protected now (per server and vault)."""
    return max(0, min(max_items_per_server() - vault.catalog.count_items(server["instance_id"]),
                      max_items_per_vault() - vault.catalog.count_items()))


def _active_names(vault: Vault, server: dict) -> set[str]:
    """Names of the server's items that count against the limits."""
    return {i["name"] for i in vault.catalog.list_items(server["instance_id"])
            if i["state"] not in ("stopped", "source-gone")}


def size_warnings(vault: Vault, server: dict, names: list[str]) -> list[str]:
    """A warning per database of ``names`` above MAX_DATABASE_BYTES (sizes as last
    discovered, from the catalog)."""
    wanted = set(names)
    return [large_database_warning(d["name"], d["size_bytes"])
            for d in vault.catalog.list_databases(server["instance_id"])
            if d["name"] in wanted and d["size_bytes"] > MAX_DATABASE_BYTES]


def large_database_warning(name: str, size_bytes: int) -> str:
    return DbsafeError("limit.large_database", database=name,
                       size=f"{size_bytes / 1024**4:.2f} TiB",
                       limit=f"{MAX_DATABASE_BYTES // 1024**4} TiB").message


# registration -----------------------------------------------------------------------------

def check_registration(pgdata: Path, data_directory: str) -> list[str]:
    """Refuse to register an instance on an unsupported deployment; return the warnings
    (a system the test suite does not run on).

    ``data_directory`` is what the connected server reports: it must be the ``pgdata``
    given (dbsafe reads the files itself, so it must run beside the instance — not
    through a remote host, a proxy or another container).
    """
    warning = check_os(read_os_release())
    try:
        same = os.path.samefile(pgdata, data_directory)
    except OSError:
        same = False
    if not same:
        raise DbsafeError("server.deployment_unsupported", pgdata=pgdata,
                          what=f"the server reached there has its data in {data_directory}, "
                               "not here (a remote host, a proxy or another container)")
    kind = filesystem_type(Path(pgdata))
    if kind in NETWORK_FILESYSTEMS:
        raise DbsafeError("server.deployment_unsupported", pgdata=pgdata,
                          what=f"it is on a network file system ({kind}), as in a "
                               "shared-storage failover cluster")
    if kind in OVERLAY_FILESYSTEMS:
        raise DbsafeError("server.deployment_unsupported", pgdata=pgdata,
                          what=f"it is on an overlay file system ({kind}): a container's "
                               "copy-on-write layer, lost with the container")
    return [warning] if warning else []


def check_os(release: dict[str, str]) -> str | None:
    """None on a system the test suite runs on; else the warning that says which it runs
    on. ``release``: the fields of os-release (``read_os_release``)."""
    key = (release.get("ID", "").lower(), release.get("VERSION_ID", ""))
    if key in TESTED_OS:
        return None
    found = release.get("PRETTY_NAME") or " ".join(k for k in key if k) or "an unknown system"
    return DbsafeError("server.os_untested", found=found,
                       tested=", ".join(TESTED_OS.values())).message


def read_os_release(files: tuple[str, ...] | None = None) -> dict[str, str]:
    """The fields of the first os-release file of ``files`` (default ``OS_RELEASE_FILES``)
    that exists; empty when none does. Read here rather than by
    ``platform.freedesktop_os_release``, which reads fixed paths once per process."""
    for path in OS_RELEASE_FILES if files is None else files:
        try:
            text = Path(path).read_text(errors="replace")
        except OSError:
            continue
        return parse_os_release(text)
    return {}


def parse_os_release(text: str) -> dict[str, str]:
    """``KEY=value`` lines, values quoted as in a shell (os-release(5)); others ignored."""
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if not sep or not key or key.startswith("#"):
            continue
        try:
            fields[key] = "".join(shlex.split(value))
        except ValueError:  # an unbalanced quote
            continue
    return fields


def filesystem_type(path: Path) -> str | None:
    """The type of the file system holding ``path`` (findmnt, util-linux), or None."""
    try:
        proc = subprocess.run(["findmnt", "--noheadings", "--output", "FSTYPE", "--target",
                               str(path)], capture_output=True, text=True, timeout=30,
                              env=tool_env())
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = proc.stdout.split()
    return lines[0] if proc.returncode == 0 and lines else None
