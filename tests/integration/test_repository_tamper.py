"""Repository tamper: an encrypted vault whose storage someone else can write. Its config
rewritten (encryption off, another vault id, another key check), its index moved aside, a
manifest or a WAL record copied under another name: backups, WAL archiving through the
running agent, restores and `dbsafe serve` refuse, and no plaintext object ever appears in
the repository. One cluster, protected (WAL archived by the agent), for the whole module;
each test puts the repository back as it found it."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import secrets_guard
from conftest import Pg, Vault, new_cluster

PASS = "repository tamper passphrase 1618"
MARKER = "tamper-probe-marker-5150"
secrets_guard.register(PASS)


@dataclass
class Setup:
    vault: Vault
    pg: Pg
    area: Path
    first: dict   # an older full
    second: dict  # the newest full
    log: dict     # a log point after it (its WAL in wal/)
    sysid: str

    @property
    def wal_folder(self) -> Path:
        return self.vault.path / "wal" / self.sysid


@pytest.fixture(scope="module")
def setup(pg_template, module_area: Path, cli_env: dict[str, str]) -> Setup:
    env = {**cli_env, "DBSAFE_PASSPHRASE": PASS, "DBSAFE_RUN_DIR": str(module_area / "run")}
    vault = Vault(module_area / "vault", env)
    vault.ok("vault", "init", "--encryption", "on")
    pg = new_cluster(pg_template, module_area, "src")
    server = vault.add_server("src", pg)
    vault.ok("protect", "src", "--all", "--restart")
    pg.execute("CREATE TABLE probe (v text)")
    pg.execute(f"INSERT INTO probe VALUES ('{MARKER}')")
    first = vault.backup("src", "--type", "full")
    pg.execute("INSERT INTO probe VALUES ('second')")
    second = vault.backup("src", "--type", "full")
    pg.execute("INSERT INTO probe VALUES ('third')")
    log = vault.backup("src", "--type", "log")
    assert not log["warnings"], log
    return Setup(vault, pg, module_area, first, second, log, server["system_identifier"])


def _wait(predicate, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _agent_log(s: Setup) -> str:
    return "".join(p.read_text() for p in (s.area / "run").rglob("agent.log"))


def _current_segment(s: Setup) -> str:
    """The segment being written (after a write: at a segment's very start,
    pg_walfile_name names the one before)."""
    s.pg.execute("INSERT INTO probe VALUES ('more')")
    return s.pg.scalar("SELECT pg_walfile_name(pg_current_wal_lsn())")


def _switch(s: Setup) -> str:
    """End the WAL segment being written; return its name (PostgreSQL now archives it)."""
    name = _current_segment(s)
    s.pg.execute("SELECT pg_switch_wal()")
    return name


def _push_refused(s: Setup, code: str) -> None:
    """The running agent refuses to archive the next WAL file: PostgreSQL counts a failure,
    the vault gets no record of it, the agent's log says why."""
    failed = s.pg.scalar("SELECT failed_count FROM pg_stat_archiver")
    log_before = len(_agent_log(s))
    name = _switch(s)
    _wait(lambda: s.pg.scalar("SELECT failed_count FROM pg_stat_archiver") > failed,
          "a refused archive")
    assert not (s.wal_folder / name).exists() or code == "vault.object_corrupt"
    assert code in _agent_log(s)[log_before:], _agent_log(s)[log_before:]


def _push_resumes(s: Setup) -> None:
    name = _switch(s)  # wakes the archiver, which retries what it left
    _wait(lambda: (s.wal_folder / name).exists() and s.pg.scalar(
        "SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%%.ready'") == 0,
        "archiving to catch up")


def _refused(s: Setup, code: str, *, push: bool = True) -> None:
    """Backup, restore, serve and (``push``) the agent all refuse with ``code``."""
    s.vault.fail(code, "backup", "src", "--type", "full")
    target = s.area / "restored"
    s.vault.fail(code, "restore", "src", "--point", s.second["point_id"], "--to-pgdata", target)
    assert not target.exists()
    s.vault.fail(code, "serve", "--once")
    if push:
        _push_refused(s, code)


def _no_plaintext(s: Setup) -> None:
    for folder in ("data", "index", "manifests", "wal", "keys"):
        for path in (s.vault.path / folder).rglob("*"):
            if not path.is_file():
                continue
            data = path.read_bytes()
            assert data[:8] not in (b"DBSAFE1\n", b"DBSAFE2\n"), path
            assert not data.endswith(b"DBSPACK1"), path
            assert MARKER.encode() not in data and b"pg_control" not in data, path


@pytest.mark.parametrize("rewrite", ["encryption off", "another vault id", "another key check"])
def test_a_rewritten_config_is_refused_everywhere(setup: Setup, rewrite: str):
    s = setup
    config_file = s.vault.path / "config"
    original = config_file.read_bytes()
    config = json.loads(original)
    if rewrite == "encryption off":  # what an attacker wants: plaintext from now on
        config.update(encryption=None, id_key="00" * 32)
    elif rewrite == "another vault id":
        config["vault_id"] = "5ca1ab1e" * 4
    else:  # a master key of the attacker's
        config["encryption"]["key_check"] = "0f" * 32
    config_file.write_text(json.dumps(config))
    try:
        _refused(s, "vault.tampered")
    finally:
        config_file.write_bytes(original)
    _push_resumes(s)
    _no_plaintext(s)


def test_an_index_moved_aside_is_refused_everywhere(setup: Setup):
    s = setup
    index, away = s.vault.path / "index", s.area / "index.away"
    index.rename(away)
    try:
        _refused(s, "vault.index_missing")
        assert not index.exists() or not any(index.iterdir())  # nothing stored again
    finally:
        shutil.rmtree(index, ignore_errors=True)
        away.rename(index)
    _push_resumes(s)
    _no_plaintext(s)


def test_an_older_manifest_over_a_newer_point_is_refused(setup: Setup):
    s = setup
    manifests = s.vault.path / "manifests"
    newer = manifests / s.second["point_id"]
    original = newer.read_bytes()
    shutil.copyfile(manifests / s.first["point_id"], newer)
    try:
        target = s.area / "restored"
        out = s.vault.fail("vault.object_corrupt", "restore", "src", "--point",
                           s.second["point_id"], "--to-pgdata", target)
        assert s.second["point_id"] in out["error"]["message"]
        assert not target.exists()
        s.vault.fail("vault.object_corrupt", "verify", "src", "--point", s.second["point_id"])
        s.vault.fail("vault.object_corrupt", "backup", "src", "--type", "diff")  # its base
    finally:
        newer.write_bytes(original)
    _no_plaintext(s)


def test_a_wal_record_under_another_name_is_refused(setup: Setup):
    s = setup
    last = s.log["last_segment"]  # the last segment the log point vouches for
    names = sorted(p.name for p in s.wal_folder.iterdir() if len(p.name) == 24)
    needed = s.wal_folder / last
    older = s.wal_folder / names[names.index(last) - 1]
    original = needed.read_bytes()
    shutil.copyfile(older, needed)  # the log point's last segment, replaced by the one before
    try:
        # as files: the WAL records are read before anything starts (a restore that starts
        # PostgreSQL reads them while it recovers)
        target = s.area / "restored"
        out = s.vault.fail("vault.object_corrupt", "restore", "src", "--point",
                           s.log["point_id"], "--as-files", target)
        assert last in out["error"]["message"]
        assert not target.exists()
        # into a data directory: PostgreSQL asks for the WAL while it recovers; the file
        # that cannot be staged aborts recovery at once (the server would otherwise wait
        # for it until pg_ctl's timeout) and the restore says why and leaves nothing
        out = s.vault.fail("vault.object_corrupt", "restore", "src", "--point",
                           s.log["point_id"], "--to-pgdata", target)
        assert last in out["error"]["message"]
        assert not target.exists()
        assert not list(s.area.glob(".restored.dbsafe-wal-stage*"))
    finally:
        needed.write_bytes(original)
    # planted where the next segment's record will go: the agent refuses to take it as
    # "already archived" and archives nothing over it
    planted = s.wal_folder / _current_segment(s)
    assert not planted.exists()
    shutil.copyfile(older, planted)
    try:
        _push_refused(s, "vault.object_corrupt")
        assert planted.read_bytes() == older.read_bytes()
    finally:
        planted.unlink()
    _push_resumes(s)
    _no_plaintext(s)
