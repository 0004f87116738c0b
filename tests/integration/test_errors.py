"""Bad input: a clear, stable error code, the registry's non-zero exit status, one line on
stderr without --json, a JSON error object with --json, and never a traceback."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from conftest import CliResult, Vault, make_area, new_cluster, remove_area, run_cli

from dbsafe.core.errors import REGISTRY


def check_error(env, code: str, *args, vault: Path | None = None) -> dict:
    """Run the command with and without --json; both must report ``code`` properly."""
    status = REGISTRY[code].exit_status
    assert status != 0

    res: CliResult = run_cli(env, *args, "--json", vault=vault)
    assert "Traceback" not in res.stdout + res.stderr, res.describe()
    payload = json.loads(res.stdout)
    assert payload["error"]["code"] == code, res.describe()
    assert res.returncode == status, res.describe()
    assert payload["error"]["message"], res.describe()

    res = run_cli(env, *args, vault=vault)
    assert "Traceback" not in res.stdout + res.stderr, res.describe()
    assert res.returncode == status, res.describe()
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, res.describe()
    assert lines[0].startswith(f"error [{code}] "), res.describe()
    assert res.stdout.strip() == "", res.describe()
    return payload["error"]


def test_unknown_server(vault: Vault, area):
    for args in (["backup", "nosuch"], ["points", "nosuch"], ["discover", "nosuch"],
                 ["verify", "nosuch"], ["server", "remove", "nosuch"],
                 ["restore", "nosuch", "--point", "20240101T000000Z-00000000",
                  "--to-pgdata", str(area / "r")]):
        err = check_error(vault.env, "server.unknown", *args, vault=vault.path)
        assert "nosuch" in err["message"]
    assert not (area / "r").exists()


def test_missing_data_directory(vault: Vault, area):
    missing = area / "no-such-folder"
    err = check_error(vault.env, "server.pgdata_missing", "server", "add", "x", "--pgdata",
                      missing, "--port", "5999", vault=vault.path)
    assert str(missing) in err["message"]

    not_pgdata = area / "just-a-folder"
    not_pgdata.mkdir()
    check_error(vault.env, "server.pgdata_missing", "server", "add", "x", "--pgdata",
                not_pgdata, "--port", "5999", vault=vault.path)
    assert vault.ok("server", "list") == []


def test_wrong_port(vault: Vault, source):
    wrong = source.port + 1
    err = check_error(vault.env, "server.wrong_port", "server", "add", "x", "--pgdata",
                      source.pgdata, "--port", wrong, vault=vault.path)
    assert str(source.port) in err["message"] and str(wrong) in err["message"]
    assert vault.ok("server", "list") == []


def test_server_not_running(vault: Vault, pg_template, area):
    # Never started: no postmaster.pid.
    pg = new_cluster(pg_template, area, "stopped", start=False)
    check_error(vault.env, "server.not_running", "server", "add", "x", "--pgdata", pg.pgdata,
                "--port", pg.port, vault=vault.path)

    # A postmaster.pid left by a postmaster that is gone.
    dead = subprocess.Popen(["true"])
    dead.wait()
    (pg.pgdata / "postmaster.pid").write_text(
        f"{dead.pid}\n{pg.pgdata}\n1700000000\n{pg.port}\n{area}\nlocalhost\n  1  2\nready\n")
    check_error(vault.env, "server.not_running", "server", "add", "x", "--pgdata", pg.pgdata,
                "--port", pg.port, vault=vault.path)
    (pg.pgdata / "postmaster.pid").unlink()

    # Registered while running, stopped since.
    pg.start()
    vault.add_server("was-up", pg)
    pg.stop()
    for args in (["backup", "was-up"], ["discover", "was-up"]):
        check_error(vault.env, "server.not_running", *args, vault=vault.path)
    jobs = vault.jobs()
    assert not [j for j in jobs if j["state"] == "running"]


def test_unsupported_version(vault: Vault, area):
    fake = area / "pg11"
    (fake / "global").mkdir(parents=True)
    (fake / "PG_VERSION").write_text("11\n")
    err = check_error(vault.env, "server.version_unsupported", "server", "add", "old",
                      "--pgdata", fake, "--port", "5999", vault=vault.path)
    assert "11" in err["message"]


def test_vault_not_initialised(cli_env):
    empty = make_area("novault-")
    try:
        for args in (["points", "x"], ["jobs"], ["vault", "info"], ["backup", "x"],
                     ["server", "list"]):
            err = check_error(cli_env, "vault.not_initialised", *args, vault=empty)
            assert str(empty) in err["message"]
        # The same through DBSAFE_HOME.
        env = {**cli_env, "DBSAFE_HOME": str(empty / "sub")}
        check_error(env, "vault.not_initialised", "points", "x")
        assert list(empty.iterdir()) == [], "a failed command must not create vault files"
    finally:
        remove_area(empty)


def test_vault_init_twice(vault: Vault):
    check_error(vault.env, "vault.exists", "vault", "init", vault=vault.path)


def test_unknown_point(src_vault: Vault, area):
    check_error(src_vault.env, "point.unknown", "restore", "src", "--point",
                "20240101T000000Z-deadbeef", "--to-pgdata", area / "r", vault=src_vault.path)
    check_error(src_vault.env, "point.unknown", "verify", "src", "--point",
                "20240101T000000Z-deadbeef", vault=src_vault.path)
    assert not (area / "r").exists()


def test_server_registered_twice(src_vault: Vault, source):
    check_error(src_vault.env, "server.exists", "server", "add", "src", "--pgdata",
                source.pgdata, "--port", source.port, vault=src_vault.path)


def test_usage_errors_have_no_traceback(vault: Vault, area):
    for args in (["restore", "x", "--point", "p"],  # neither --to-pgdata nor --as-files
                 ["backup", "x", "--type", "differential"],
                 ["restore", "x", "--point", "p", "--to-pgdata", str(area / "r"),
                  "--tablespace-map", "notanoid"]):
        res = vault.run(*args)
        assert res.returncode == 2, res.describe()


def test_user_without_backup_rights(vault: Vault, source):
    """PGUSER names a role that may log in but is no superuser: the message must say what
    right is missing (server.not_superuser), not report an internal error."""
    source.execute("DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = "
                   "'dbsafe_plain') THEN CREATE ROLE dbsafe_plain LOGIN; END IF; END $$")
    env = {**vault.env, "PGUSER": "dbsafe_plain"}
    check_error(env, "server.not_superuser", "server", "add", "plain", "--pgdata",
                source.pgdata, "--port", source.port, vault=vault.path)
    vault.add_server("src", source)  # as postgres
    check_error(env, "server.not_superuser", "backup", "src", vault=vault.path)
    assert vault.points("src") == []
    assert source.scalar("SELECT count(*) FROM pg_replication_slots") == 0


def test_unknown_owner_for_restore(src_vault: Vault, area):
    """``--owner`` naming no OS user is bad input: a clear error, nothing left behind."""
    point = src_vault.backup("src")["point_id"]
    target = area / "r"
    res = src_vault.run("restore", "src", "--point", point, "--to-pgdata", target,
                        "--owner", "no_such_os_user", "--json")
    assert res.returncode != 0, res.describe()
    code = res.json()["error"]["code"]
    assert code != "internal", f"--owner no_such_os_user gave an internal error: {res.stdout}"
    assert not target.exists()


def test_wal_level_minimal(vault: Vault, pg_template, area):
    pg = new_cluster(pg_template, area, "minimal",
                     settings={"wal_level": "minimal", "max_wal_senders": "0"})
    vault.add_server("m", pg)
    err = check_error(vault.env, "server.wal_level", "backup", "m", vault=vault.path)
    assert "minimal" in err["message"]
    assert vault.points("m") == []
    assert vault.repository().point_ids() == []
    assert pg.scalar("SELECT count(*) FROM pg_replication_slots") == 0
    backups = [j for j in vault.jobs() if j["type"] == "backup"]
    assert backups and {j["state"] for j in backups} == {"failed"}
    assert {j["error_code"] for j in backups} == {"server.wal_level"}


def test_no_replication_slot_available(vault: Vault, pg_template, area):
    """max_replication_slots = 0 is a valid setting (pg_basebackup works without a slot);
    dbsafe needs a temporary slot, so it must say so clearly, not fail as a bug."""
    pg = new_cluster(pg_template, area, "noslots", settings={"max_replication_slots": "0"})
    vault.add_server("n", pg)
    res = vault.run("backup", "n", "--json")
    assert res.returncode != 0, res.describe()
    code = res.json()["error"]["code"]
    assert code != "internal", f"max_replication_slots=0 gave an internal error: {res.stdout}"
    assert vault.points("n") == []
