"""``dbsafe policy create|list|show|edit|delete`` and ``dbsafe plan`` through the command
line, against a real vault (and a real cluster for the policy-in-use case)."""

from __future__ import annotations

import sqlite3

from conftest import new_cluster

ISSUE_EXAMPLE = ["--full", "weekly", "--full-days", "sun", "--full-time", "01:00",
                 "--timezone", "Europe/Berlin", "--diff-days", "mon,tue,wed,thu,fri,sat",
                 "--log-every", "15", "--keep-weekly", "12", "--keep-monthly", "12",
                 "--keep-yearly", "7", "--keep-diff", "30", "--keep-log", "14",
                 "--compression", "on"]


def names(vault) -> list[str]:
    return [p["name"] for p in vault.ok("policy", "list")]


def test_default_policy_exists_on_first_use(vault):
    policies = vault.ok("policy", "list")
    assert [p["name"] for p in policies] == ["default"]
    d = policies[0]
    assert (d["full"], d["full_time"], d["timezone"], d["log_every"]) == \
        ("daily", "01:00", "UTC", 60)
    assert (d["keep_daily"], d["keep_log"], d["compression"]) == (30, 14, True)
    assert d["recovery_model"] == "FULL" and d["items_using"] == []


def test_create_show_and_list_the_issue_example(vault):
    created = vault.ok("policy", "create", "gfs", *ISSUE_EXAMPLE)
    assert created["full_days"] == ["sun"]
    assert created["diff_days"] == ["mon", "tue", "wed", "thu", "fri", "sat"]
    assert created["keep_daily"] is None          # a weekly full has no daily tier
    assert (created["keep_weekly"], created["keep_monthly"], created["keep_yearly"]) == \
        (12, 12, 7)
    shown = vault.ok("policy", "show", "gfs")
    assert {k: v for k, v in shown.items() if k not in ("items_using",)} == created
    runs = shown["next_runs"]
    assert runs["full"].endswith("T00:00:00+00:00")   # Sunday 01:00 CET
    assert runs["log"][14:16] in ("00", "15", "30", "45") and runs["drill"] is None
    assert names(vault) == ["default", "gfs"]
    text = vault.run("policy", "show", "gfs")
    assert text.returncode == 0 and "next full:" in text.stdout
    assert "weekly on sun at 01:00 Europe/Berlin" in text.stdout


def test_a_policy_outside_the_ranges_is_refused_and_nothing_is_saved(vault):
    for args, rule in [
        (["--log-every", "45"], "log_every must be one of 1, 2, 3, 4, 5, 6, 10, 12, 15, 30"),
        (["--keep-daily", "5"], "keep_daily must be 7 to 9999 days, not 5"),
        (["--keep-log", "36"], "keep_log must be 7 to 35 days, not 36"),
        (["--diff-days", "mon", "--keep-diff", "14"], "differentials need a weekly full"),
        (["--full", "weekly", "--full-days", "sun", "--keep-weekly", "4", "--diff-days",
          "sun", "--keep-diff", "7"], "never runs on a full's day: sun"),
        (["--timezone", "Europe/Atlantis"], "'Europe/Atlantis' is not an IANA time zone"),
        (["--full-time", "25:00"], "full_time must be a 24-hour time HH:MM"),
        (["--compression-level", "30"], "compression_level must be a zstd level from 1"),
        (["--keep-weekly", "lots"], "--keep-weekly must be a whole number or none"),
        (["--compression", "maybe"], "--compression must be on or off"),
    ]:
        out = vault.fail("policy.invalid", "policy", "create", "broken", *args)
        assert rule in out["error"]["message"], (args, out)
        assert "nothing was saved" in out["error"]["message"]
    assert names(vault) == ["default"]
    # the text form: one line on stderr, exit status 2
    res = vault.run("policy", "create", "broken", "--keep-daily", "10000")
    assert res.returncode == 2
    assert "[policy.invalid]" in res.stderr and "keep_daily must be 7 to 9999 days" in res.stderr


def test_edit_validates_and_keeps_the_old_policy_when_refused(vault):
    vault.ok("policy", "create", "p1", "--keep-daily", "14")
    before = vault.ok("policy", "show", "p1")
    vault.fail("policy.invalid", "policy", "edit", "p1", "--keep-log", "40")
    assert vault.ok("policy", "show", "p1") == before
    edited = vault.ok("policy", "edit", "p1", "--log-every", "none", "--full-time", "23:30")
    assert edited["log_every"] is None and edited["keep_log"] is None   # implied
    assert edited["recovery_model"] == "SIMPLE" and edited["full_time"] == "23:30"
    assert edited["keep_daily"] == 14                                   # untouched
    # switching to a weekly full drops the daily tier unless it is given
    weekly = vault.ok("policy", "edit", "p1", "--full", "weekly", "--full-days", "sat,wed",
                      "--keep-weekly", "8")
    assert weekly["full_days"] == ["wed", "sat"] and weekly["keep_daily"] is None


def test_names_taken_unknown_and_the_default(vault):
    vault.ok("policy", "create", "p1")
    out = vault.fail("policy.exists", "policy", "create", "p1")
    assert "dbsafe policy edit p1" in out["error"]["message"]
    out = vault.fail("policy.unknown", "policy", "show", "nope")
    assert "default, p1" in out["error"]["message"]
    vault.fail("policy.unknown", "policy", "edit", "nope", "--keep-daily", "9")
    vault.fail("policy.unknown", "policy", "delete", "nope")
    vault.fail("policy.default_required", "policy", "delete", "default")
    vault.ok("policy", "edit", "default", "--keep-daily", "45")
    assert vault.ok("policy", "show", "default")["keep_daily"] == 45


def test_a_policy_in_use_cannot_be_deleted(vault, area, pg_template):
    pg = new_cluster(pg_template, area, "pg")
    pg.execute("CREATE DATABASE appdb")
    vault.add_server("srv", pg)
    vault.ok("policy", "create", "gold", "--keep-daily", "60")
    vault.ok("policy", "create", "spare")
    vault.ok("protect", "srv", "--db", "appdb", "--db", "postgres",
             "--recovery-model", "simple")
    # `protect --policy` is the lead's; here the catalog row is pointed at the policy
    with sqlite3.connect(vault.path / "catalog.sqlite") as db:
        db.execute("UPDATE protected_databases SET policy = 'gold'")
        db.execute("UPDATE instances SET auto_protect_policy = 'spare'")
    listed = {p["name"]: p["items_using"] for p in vault.ok("policy", "list")}
    assert listed == {"default": [], "gold": ["srv/appdb", "srv/postgres"],
                      "spare": ["srv (auto-protection)"]}
    out = vault.fail("policy.in_use", "policy", "delete", "gold")
    assert "2 item(s): srv/appdb, srv/postgres" in out["error"]["message"]
    vault.fail("policy.in_use", "policy", "delete", "spare")
    assert vault.ok("policy", "show", "gold")["items_using"] == ["srv/appdb", "srv/postgres"]
    with sqlite3.connect(vault.path / "catalog.sqlite") as db:
        db.execute("UPDATE protected_databases SET policy = 'default'")
    assert vault.ok("policy", "delete", "gold") == {"deleted": "gold"}
    assert names(vault) == ["default", "spare"]


def test_plan_with_a_stored_policy(vault):
    vault.ok("policy", "create", "gfs", *ISSUE_EXAMPLE)
    args = ["plan", "--cores", "4", "--bandwidth-mbps", "1000", "--db-count", "20",
            "--db-size-gb", "50", "--change-rate-pct", "2", "--policy", "gfs"]
    out = vault.ok(*args)
    assert out["policy"] == "gfs" and out["busiest_day"] in ("sun", "sat")
    assert out["fits_window"] and 0 < out["max_databases"] <= 2000
    assert len(out["vault_gb_by_month"]) == 12
    assert out["rates"]["full_mb_s_per_core"] == 246.0
    doubled = vault.ok(*args[:2], "8", *args[3:])
    assert doubled["first_full_hours"] <= out["first_full_hours"]
    text = vault.run(*args)
    assert text.returncode == 0 and "recommended maximum:" in text.stdout
    vault.fail("usage.invalid", "plan", *args[1:2], "0", *args[3:])
    vault.fail("policy.unknown", "plan", *args[1:-1], "nope")


# the same rows each time (compressible, not trivially: hex text, numbers, short runs)
SAME_ROWS = ("CREATE TABLE {} AS SELECT g AS id, md5(g::text) AS h, (g * 7919 % 100003) AS n, "
             "repeat(chr(65 + g % 26), 1 + g % 5) AS s FROM generate_series(1, 60000) g")


def _blobs(repo, block_ids: list[str]) -> list:
    """Where and how the vault stored each block (length, raw_length, codec)."""
    return [repo.index.get(bytes.fromhex(b)) for b in block_ids]


def _table_blobs(vault, pg, point_id: str, table: str) -> list:
    repo = vault.repository()
    path = str(pg.relation_path(table).relative_to(pg.pgdata))
    (entry,) = [f for f in repo.load_manifest_whole(point_id)["files"] if f["path"] == path]
    return _blobs(repo, entry["blocks"])


def test_the_policy_compresses_every_backup_and_the_wal(wal_vault, area, pg_template):
    """The policy's compression, not a fixed level 1, for an on-demand full and for the WAL
    the agent archives; an explicit --compress-level wins for one backup; a higher level
    stores the same rows in fewer bytes than level 1."""
    vault = wal_vault
    pg = new_cluster(pg_template, area, "pg")
    sysid = vault.add_server("srv", pg)["system_identifier"]
    vault.ok("policy", "create", "raw", "--compression", "off")
    vault.ok("protect", "srv", "--all", "--policy", "raw", "--restart")
    pg.execute(SAME_ROWS.format("t1"))
    full = vault.backup("srv")
    assert (full["compression_level"], full["compression_from"]) == (0, "policy raw")
    stored = _table_blobs(vault, pg, full["point_id"], "t1")
    assert stored and all(b.codec == 0 and b.length == b.raw_length for b in stored)
    # every block this first backup stored is raw: stored bytes are the bytes read, once
    # each (blocks repeated within the backup, such as all-zero ones, are stored once)
    repo = vault.repository()
    manifest = repo.load_manifest_whole(full["point_id"])
    blocks = {b for f in manifest["files"] + manifest["wal"] for b in f["blocks"]}
    assert all(b.codec == 0 and b.length == b.raw_length for b in _blobs(repo, list(blocks)))
    # the WAL the agent archives under the policy: raw too
    pg.execute("INSERT INTO t1 SELECT * FROM t1")
    vault.backup("srv", "--type", "log")
    repo = vault.repository()
    wal = [repo.load_wal_record(sysid, n) for n in repo.wal_names(sysid)]
    wal_blobs = _blobs(repo, [b for r in wal for b in r["blocks"]])
    assert len(wal) >= 2 and all(b.codec == 0 and b.length == b.raw_length
                                 for b in wal_blobs)
    # one backup at an explicit level, then the policy at a higher one, on the same rows
    pg.execute(SAME_ROWS.format("t2"))
    copy = vault.backup("srv", "--type", "copy-only", "--compress-level", "1")
    assert (copy["compression_level"], copy["compression_from"]) == \
        (1, "asked for this backup")
    vault.ok("policy", "edit", "raw", "--compression", "on", "--compression-level", "9")
    pg.execute(SAME_ROWS.format("t3"))
    high = vault.backup("srv", "--type", "full")
    assert (high["compression_level"], high["compression_from"]) == (9, "policy raw")
    at_1 = sum(b.length for b in _table_blobs(vault, pg, copy["point_id"], "t2"))
    at_9 = sum(b.length for b in _table_blobs(vault, pg, high["point_id"], "t3"))
    raw = sum(b.raw_length for b in _table_blobs(vault, pg, high["point_id"], "t3"))
    assert at_9 < at_1 * 0.95 < raw * 0.95
