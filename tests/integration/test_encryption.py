"""Encrypted vaults: what is stored reveals nothing, the key is needed to read it (and must be
brought to another client, as a certificate for TDE), rotation, damaged ciphertext."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import secrets_guard
from conftest import Pg, Vault, free_port, restored

PASS = "correct horse battery staple 7"
NEW_PASS = "a new passphrase 99, longer"
WRONG_PASS = "not the passphrase at all"
NEWER_PASS = "the newest passphrase 31415"
secrets_guard.register(PASS, NEW_PASS, WRONG_PASS, NEWER_PASS)
MARKER = "dbsafe-secret-marker-4242"


@pytest.fixture
def enc_vault(area: Path, cli_env: dict[str, str], source: Pg) -> Vault:
    env = {**cli_env, "DBSAFE_PASSPHRASE": PASS}
    vault = Vault(area / "vault", env)
    info = vault.ok("vault", "init", "--encryption", "on")
    assert info["encrypted"] is True
    source.execute("CREATE TABLE IF NOT EXISTS secrets_probe (v text)", "appdb")
    source.execute(f"INSERT INTO secrets_probe VALUES ('{MARKER}')", "appdb")
    source.execute("CHECKPOINT")
    vault.add_server("src", source)
    return vault


def _client(area: Path, env: dict[str, str], name: str, repository: Path,
            passphrase: str | None = PASS) -> Vault:
    env = {k: v for k, v in env.items() if k != "DBSAFE_PASSPHRASE"}
    if passphrase is not None:
        env["DBSAFE_PASSPHRASE"] = passphrase
    env["DBSAFE_KEY_DIR"] = str(area / f"{name}-keys")  # another server: its own key folder
    other = Vault(area / name, env)
    out = other.ok("vault", "connect", "--repository", repository)
    assert out["encrypted"] is True and out["repository"]["location"] == str(repository)
    return other


def _repository_bytes(root: Path) -> list[tuple[Path, bytes]]:
    """Every object of the repository (not the client's own files beside it)."""
    out = []
    for folder in ("data", "index", "manifests", "keys", "wal"):
        for path in sorted((root / folder).rglob("*")):
            if path.is_file():
                out.append((path, path.read_bytes()))
    return out


def test_nothing_readable_is_stored(enc_vault: Vault, source: Pg, area: Path):
    point = enc_vault.backup("src", "--type", "full")
    stored = _repository_bytes(enc_vault.path)
    assert any(p.parts[-3] == "data" for p, _ in stored)
    repo = enc_vault.repository_with_key(PASS)
    ids = set()
    for pack in repo.storage.names("index"):
        doc = repo.load_index_file(pack)
        assert doc["key"] == repo.data_key_ids()[0]
        ids.update(bytes.fromhex(b[0]) for b in doc["blobs"])
    assert len(ids) > 10
    probes = [MARKER.encode(), b"pgbench_accounts", b"PG_VERSION", point["point_id"].encode(),
              b"backup_label", source.pgdata.as_posix().encode()]
    sample = sorted(ids)[:200]
    for path, data in stored:
        for probe in probes:
            assert probe not in data, (path, probe)
        for block_id in sample:  # ids appear nowhere, neither raw nor as hex
            assert block_id not in data and block_id.hex().encode() not in data, path
    config = json.loads((enc_vault.path / "config").read_text())
    assert config["id_key"] is None and config["encryption"]["cipher"] == "aes-256-gcm"
    # the key file on this client is wrapped (argon2id): the passphrase is not in it; it is
    # kept outside the vault's folder, in a folder of its own
    key_doc = json.loads(enc_vault.key_file.read_text())
    assert "master_key" not in key_doc and PASS not in json.dumps(key_doc)
    assert key_doc["kdf"]["name"] == "argon2id" and key_doc["kdf"]["m"] >= 64 * 1024
    assert enc_vault.key_file.stat().st_mode & 0o777 == 0o600
    assert enc_vault.key_file.parent.stat().st_mode & 0o777 == 0o700
    assert not (enc_vault.path / "key").exists()
    assert not any(enc_vault.path.rglob("*.key"))
    assert enc_vault.ok("verify", "src")["ok"] is True


def test_restore_elsewhere_needs_the_key(enc_vault: Vault, source: Pg, area: Path,
                                         cli_env: dict[str, str]):
    point = enc_vault.backup("src", "--type", "full")
    expected = source.table_checksums()

    # without its key (moved away), a client can list but not read: refused, nothing written
    target = area / "restored"
    enc_vault.key_file.rename(area / "key.away")
    assert [p["point_id"] for p in enc_vault.points("src")] == [point["point_id"]]
    enc_vault.fail("key.missing", "restore", "src", "--point", point["point_id"],
                   "--to-pgdata", target)
    assert not target.exists()
    enc_vault.fail("key.missing", "verify", "src")
    (area / "key.away").rename(enc_vault.key_file)

    # a second client of the same repository (its own catalog) has no key
    other = _client(area, enc_vault.env, "client2", enc_vault.path)
    assert other.ok("key", "show")["key_on_this_client"] is False

    # the key of another vault is refused; so is a wrong passphrase
    stranger = Vault(area / "stranger", enc_vault.env)
    stranger.ok("vault", "init", "--encryption", "on")
    stranger.ok("key", "export", area / "stranger.key")
    other.fail("key.wrong", "key", "import", area / "stranger.key")
    enc_vault.ok("key", "export", area / "vault.key")
    wrong = _client(area, enc_vault.env, "client3", enc_vault.path, passphrase=WRONG_PASS)
    wrong.fail("key.wrong_passphrase", "key", "import", area / "vault.key")

    # with the exported key imported, the second client restores
    imported = other.ok("key", "import", area / "vault.key")
    assert imported["vault_id"] == enc_vault.ok("vault", "info")["vault_id"]
    assert imported["adopted"] == ["src"]  # learnt from the manifests it can now read
    port = free_port()
    out = other.ok("restore", "src", "--point", point["point_id"], "--to-pgdata", target,
                   "--port", port, "--start")
    pg = restored(target, out["port"])
    try:
        assert pg.table_checksums() == expected
        assert pg.scalar("SELECT v FROM secrets_probe LIMIT 1", "appdb") == MARKER
    finally:
        pg.stop()

    # a wrong passphrase for this client's own key: a clear error, not a traceback
    bad = Vault(enc_vault.path, {**enc_vault.env, "DBSAFE_PASSPHRASE": WRONG_PASS})
    bad.fail("key.wrong_passphrase", "verify", "src")


def test_rotation_keeps_old_backups_readable(enc_vault: Vault, source: Pg, area: Path):
    probes = "SELECT count(*) FROM secrets_probe"
    rows = {}
    first = enc_vault.backup("src", "--type", "full")
    rows[first["point_id"]] = source.scalar(probes, "appdb")
    enc_vault.ok("key", "export", area / "before-rotation.key")
    new_pass = NEW_PASS
    rotated = Vault(enc_vault.path, {**enc_vault.env, "DBSAFE_NEW_PASSPHRASE": new_pass})
    out = rotated.ok("key", "rotate")
    assert out["rewrapped"] is True and out["data_keys"] == 2
    # the old passphrase no longer opens this client's key; the new one does
    enc_vault.fail("key.wrong_passphrase", "verify", "src")
    now = Vault(enc_vault.path, {**enc_vault.env, "DBSAFE_PASSPHRASE": new_pass})
    source.execute("INSERT INTO secrets_probe VALUES ('after rotation')", "appdb")
    source.execute("CHECKPOINT")
    second = now.backup("src", "--type", "full")
    rows[second["point_id"]] = source.scalar(probes, "appdb")
    repo = now.repository_with_key(new_pass)
    keys_used = {repo.load_index_file(p)["key"]
                 for p in repo.storage.names("index")}
    assert keys_used == set(repo.data_key_ids())  # old packs on the old key, new on the new
    assert now.ok("verify", "src")["ok"] is True
    # a backup from before the rotation restores with the master key exported before it
    other = _client(area, enc_vault.env, "client2", enc_vault.path)
    other.ok("key", "import", area / "before-rotation.key")
    for point in (first, second):
        target = area / f"r-{point['point_id']}"
        res = other.ok("restore", "src", "--point", point["point_id"], "--to-pgdata", target,
                       "--port", free_port(), "--start")
        pg = restored(target, res["port"])
        try:
            assert pg.scalar(probes, "appdb") == rows[point["point_id"]]
        finally:
            pg.stop()

    # a master rotation: a new master key, the data keys and the id key re-wrapped under
    # it; every key file of the old one stops opening the vault, other clients follow by
    # importing the new key
    out = Vault(now.path, {**now.env, "DBSAFE_NEW_PASSPHRASE": NEWER_PASS}).ok(
        "key", "rotate", "--master")
    assert out["master_rotated"] is True and out["data_keys"] == 3
    newest = Vault(enc_vault.path, {**enc_vault.env, "DBSAFE_PASSPHRASE": NEWER_PASS})
    now.fail("key.wrong_passphrase", "verify", "src")  # this client's key was replaced
    out = other.fail("vault.tampered", "points", "src")  # pinned the old key check
    assert "key import" in out["error"]["message"]
    other.fail("key.wrong", "key", "import", area / "before-rotation.key")
    newest.ok("key", "export", area / "after-rotation.key", "--plain")
    other.ok("key", "import", area / "after-rotation.key")
    assert other.ok("verify", "src")["ok"] is True  # every block, old and new, under it
    third = newest.backup("src", "--type", "full")  # same ids: all blocks deduplicated
    assert third["bytes_read"] > 0 and third["bytes_stored"] < third["bytes_read"] / 10


def test_damaged_ciphertext_is_detected(enc_vault: Vault, area: Path):
    point = enc_vault.backup("src", "--type", "copy-only")
    pack = max(enc_vault.pack_files(), key=lambda p: p.stat().st_size)
    data = bytearray(pack.read_bytes())
    data[len(data) // 3] ^= 0x01  # one bit inside a blob
    pack.write_bytes(bytes(data))
    out = enc_vault.fail("verify.failed", "verify", "src")
    report = json.dumps(out)
    assert "ciphertext fails authentication" in report and '"corrupt"' in report, report
    target = area / "restored"
    res = enc_vault.run("restore", "src", "--point", point["point_id"], "--to-pgdata", target,
                        "--json")
    assert res.returncode != 0
    manifest = enc_vault.path / "manifests" / point["point_id"]
    sealed = bytearray(manifest.read_bytes())
    sealed[-5] ^= 0x01
    manifest.write_bytes(bytes(sealed))
    enc_vault.fail("vault.object_corrupt", "verify", "src", "--point", point["point_id"])
    assert os.environ.get("DBSAFE_PASSPHRASE") is None  # the tests' own env stays clean
