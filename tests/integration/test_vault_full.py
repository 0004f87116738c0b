"""Running out of space is the host's condition, said as such: a vault that fills during a
full backup is ``vault.full`` (where, how much more, how much free) with a ``vault_full``
alert, not an internal error; no point appears and the earlier one still verifies. A WAL
file the vault has no room for is refused before anything is written. A restore whose
target file system is too small is refused before it writes (``restore.no_space``)."""

from __future__ import annotations

import os
import subprocess

from conftest import allow_restores, make_vault, new_cluster

from dbsafe.services.activity import alerts
from dbsafe.services.handle.vault_handle import Vault
from dbsafe.services.logchain.archive import archive_wal_file

SEGMENT = 16 << 20


def _alerts(vault, kind: str) -> list[dict]:
    return [a for a in vault.ok("alerts") if a["kind"] == kind]


def test_a_full_backup_that_fills_the_vault(pg_template, area, small_fs, cli_env):
    disk = small_fs("vaultdisk", "24m")
    vault = make_vault(cli_env, disk / "vault")
    pg = new_cluster(pg_template, area, "src")
    vault.add_server("src", pg)
    first = vault.backup("src")["point_id"]
    # ~32 MB that neither zstd nor deduplication can shrink: more than the disk holds
    pg.execute("CREATE EXTENSION pgcrypto")
    pg.execute("CREATE TABLE noise AS SELECT g, gen_random_bytes(1024) AS b "
               "FROM generate_series(1, 32000) g")
    pg.execute("CHECKPOINT")
    out = vault.fail("vault.full", "backup", "src", "--type", "full")
    details = out["error"]["details"]
    assert details["path"] == str(disk / "vault") and int(details["need"]) > 0, out
    assert "the full backup of src" in out["error"]["message"]
    # nothing of it is visible or left behind; the earlier point is whole
    assert [p["point_id"] for p in vault.points("src")] == [first]
    assert vault.ok("verify", "src")["points"]
    assert [p.name for p in (disk / "vault" / "tmp").iterdir()] == []
    (job,) = [j for j in vault.jobs() if j["state"] == "failed"][:1]
    assert job["error_code"] == "vault.full"
    (alert,) = _alerts(vault, "vault_full")
    assert alert["severity"] == "critical" and "the full backup of src" in alert["message"]
    # room again: the next backup succeeds and resolves the alert
    subprocess.run(["mount", "-o", "remount,size=400m", str(disk)], check=True)
    assert vault.backup("src")["point_id"] != first
    assert _alerts(vault, "vault_full") == []


def test_a_wal_file_the_vault_cannot_hold_is_refused_before_writing(area, small_fs, cli_env):
    disk = small_fs("waldisk", "8m")
    make_vault(cli_env, disk / "vault")
    vault = Vault.open(disk / "vault")
    pg_wal = area / "pg_wal"
    pg_wal.mkdir()
    name = "000000010000000000000003"
    (pg_wal / name).write_bytes(os.urandom(SEGMENT))
    server = {"name": "src", "system_identifier": "7000000000000000001",
              "wal_segment_size": SEGMENT}
    try:
        archive_wal_file(vault, server, pg_wal / name, name)
    except Exception as exc:  # noqa: BLE001 - the code is what is checked
        error = exc
    assert getattr(error, "code", None) == "vault.full", error
    assert error.details["need"] == SEGMENT and int(error.details["free"]) < SEGMENT
    assert f"WAL file {name} of src" in error.message
    stored = [p for folder in ("data", "index", "wal", "tmp")
              for p in (disk / "vault" / folder).rglob("*") if p.is_file()]
    assert stored == []  # not a block, not a record
    (alert,) = [a for a in alerts.list_alerts(vault.catalog) if a["kind"] == "vault_full"]
    assert alert["details"]["source"] == "WAL archiving of src"
    vault.catalog.close()


def test_a_restore_whose_target_is_too_small_writes_nothing(src_vault, area, small_fs):
    point = src_vault.backup("src", "--db", "appdb")["point_id"]
    small = small_fs("targetdisk", "8m")
    allow_restores(src_vault.path, area, small)
    target = small / "restored"
    out = src_vault.fail("restore.no_space", "restore", "src", "--point", point,
                         "--to-pgdata", target)
    details = out["error"]["details"]
    assert details["where"] == str(target) and int(details["need"]) > int(details["free"])
    assert not target.exists() and list(small.iterdir()) == []
    (job,) = src_vault.jobs()[:1]
    assert job["type"] == "backup"  # refused before a restore job began
