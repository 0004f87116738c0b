"""What a client knows of its vault, through the command line (no cluster needed): pins
recorded at init, connect and first open, a repository that differs refused, keys kept
out of the vault's folder and only under strong passphrases, owner-only files, and a
manifest that vanished raising an alert."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import secrets_guard
from conftest import Vault

PASS = "client trust passphrase 2718"
WEAK = "password1234"
secrets_guard.register(PASS, WEAK)


def _rewrite(path: Path, **changes) -> None:
    config = json.loads((path / "config").read_text())
    config.update(changes)
    (path / "config").write_text(json.dumps(config))


@pytest.fixture
def enc(area: Path, cli_env: dict[str, str]) -> Vault:
    vault = Vault(area / "vault", {**cli_env, "DBSAFE_PASSPHRASE": PASS})
    vault.ok("vault", "init", "--encryption", "on")
    return vault


def test_init_pins_the_vault_and_a_rewritten_config_is_refused(enc: Vault):
    pins = json.loads((enc.path / "client.json").read_text())["pins"]
    config = json.loads((enc.path / "config").read_text())
    assert pins == {"vault_id": config["vault_id"], "format": 1, "block_size": 1 << 20,
                    "encrypted": True, "key": config["encryption"]["key_check"],
                    "config_mac": True}
    original = (enc.path / "config").read_bytes()
    for changes, what in (({"encryption": None, "id_key": "00" * 32}, "encryption is off"),
                          ({"vault_id": "ab" * 16}, "vault id is abab"),
                          ({"block_size": 8192}, "block size is 8192")):
        _rewrite(enc.path, **changes)
        for command in (("vault", "info"), ("points", "nosuch"), ("key", "show")):
            out = enc.fail("vault.tampered", *command)
            assert what in out["error"]["message"], out
        (enc.path / "config").write_bytes(original)
    assert enc.ok("vault", "info")["encrypted"] is True


def test_a_connected_client_refuses_the_repository_changed_behind_it(area, cli_env):
    owner = Vault(area / "repo", cli_env)
    owner.ok("vault", "init")
    client = Vault(area / "client", cli_env)
    client.ok("vault", "connect", "--repository", owner.path)
    _rewrite(owner.path, id_key="11" * 32)  # another id key: blocks, hashes, seals change
    out = client.fail("vault.tampered", "vault", "info")
    assert "key check" in out["error"]["message"]
    out = owner.fail("vault.tampered", "vault", "info")  # the local client too


def test_a_client_without_pins_trusts_on_first_use(area, cli_env):
    vault = Vault(area / "vault", cli_env)
    vault.ok("vault", "init")
    settings = json.loads((vault.path / "client.json").read_text())
    del settings["pins"], settings["client_id"]  # a folder made by an older dbsafe
    (vault.path / "client.json").write_text(json.dumps(settings))
    vault.ok("vault", "info")
    again = json.loads((vault.path / "client.json").read_text())
    assert again["pins"]["vault_id"] == vault.ok("vault", "info")["vault_id"]
    assert len(again["client_id"]) == 16
    _rewrite(vault.path, block_size=2 << 20)
    vault.fail("vault.tampered", "vault", "info")


def test_the_key_is_kept_outside_the_vault_folder(enc: Vault):
    shown = enc.ok("key", "show")
    assert shown["key_on_this_client"] is True
    assert Path(shown["key_file"]) == enc.key_file
    assert not enc.key_file.is_relative_to(enc.path)
    assert not (enc.path / "key").exists()


def test_a_key_in_the_vault_folder_of_before_is_found_and_moved_out(enc: Vault):
    enc.key_file.rename(enc.path / "key")  # where versions before the key folder kept it
    assert enc.ok("key", "show")["key_file"] == str(enc.path / "key")
    env = {**enc.env, "DBSAFE_NEW_PASSPHRASE": PASS + " new"}
    out = Vault(enc.path, env).ok("key", "rotate")
    assert out["key_file"] == str(enc.key_file)
    assert enc.key_file.exists() and not (enc.path / "key").exists()


def test_weak_passphrases_protect_no_key(area, cli_env, enc: Vault):
    weak = Vault(area / "weak", {**cli_env, "DBSAFE_PASSPHRASE": WEAK})
    weak.fail("key.passphrase_weak", "vault", "init", "--encryption", "on")
    assert not (weak.path / "config").exists()
    Vault(enc.path, {**enc.env, "DBSAFE_NEW_PASSPHRASE": WEAK}).fail(
        "key.passphrase_weak", "key", "rotate")
    enc.ok("key", "export", area / "plain.key", "--plain")
    other = Vault(area / "other", {**cli_env, "DBSAFE_PASSPHRASE": WEAK,
                                   "DBSAFE_KEY_DIR": str(area / "other-keys")})
    other.ok("vault", "connect", "--repository", enc.path)
    other.fail("key.passphrase_weak", "key", "import", area / "plain.key")
    Vault(enc.path, {**enc.env, "DBSAFE_PASSPHRASE": WEAK}).fail(
        "key.wrong_passphrase", "key", "export", area / "x.key")


def test_a_vault_folder_and_its_files_are_its_owners_alone(area, cli_env):
    vault = Vault(area / "vault", cli_env)
    vault.ok("vault", "init")
    vault.ok("vault", "info")
    files = [p for p in vault.path.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"config", "client.json", "catalog.sqlite"}
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in files} == \
        {p.name: "0o600" for p in files}
    assert vault.path.stat().st_mode & 0o777 == 0o700
    vault.path.chmod(0o755)  # made by an older dbsafe
    vault.ok("vault", "info")
    assert vault.path.stat().st_mode & 0o777 == 0o700


def test_serve_refuses_a_vault_whose_index_was_moved_aside(area, cli_env):
    vault = Vault(area / "vault", cli_env)
    vault.ok("vault", "init")
    from dbsafe.vault.repository import Repository

    repo = Repository.open(vault.path)
    with repo.writing("test"):
        sink = repo.block_sink(level=1)
        sink.store(b"a block " * 1000)
        sink.close()
    (vault.path / "index").rename(area / "index.away")
    vault.fail("vault.index_missing", "serve", "--once")


# a manifest that vanished --------------------------------------------------------------
def _point(vault_path: Path, point_id: str) -> None:
    from dbsafe.vault.repository import Repository

    Repository.open(vault_path).save_manifest({
        "format": 1, "point_id": point_id, "type": "full", "copy_only": False,
        "instance": {"server": "gone", "system_identifier": "7300000000000000042",
                     "pg_version": 15, "pgdata": "/srv/pg/gone"},
        "start_time": point_id[:8], "end_time": point_id[:8], "start_lsn": "0/2000028",
        "stop_lsn": "0/2000100", "timeline": 1, "files": [], "wal": [],
        "stats": {"bytes_read": 0, "bytes_stored": 0, "corrupt_pages": 0}})


def test_a_manifest_that_vanished_raises_an_alert_and_a_deletion_does_not(area, cli_env):
    from dbsafe.services.activity import alerts
    from dbsafe.services.handle.adopt import adopt_servers
    from dbsafe.services.handle.vault_handle import Vault as Client
    from dbsafe.services.lifecycle import points, prune

    vault = Vault(area / "vault", cli_env)
    vault.ok("vault", "init")
    lost, deleted = "20240101T000000Z-0000000a", "20240102T000000Z-0000000b"
    for point_id in (lost, deleted):
        _point(vault.path, point_id)
    client = Client.open(vault.path)
    assert adopt_servers(client)["adopted"] == ["gone"]
    assert [p["point_id"] for p in points.list_points(client, "gone")] == [lost, deleted]

    (vault.path / "manifests" / lost).unlink()  # someone who can write the storage
    row = next(p for p in points.list_points(Client.open(vault.path), "gone", None)
               if p["point_id"] == deleted)
    prune.remove_points(Client.open(vault.path), [{**row, "server": "gone"}])
    client = Client.open(vault.path)
    assert points.list_points(client, "gone") == []
    (alert,) = alerts.list_alerts(client.catalog)
    assert alert["kind"] == "manifest_missing" and alert["severity"] == "critical"
    assert alert["item"] == lost and alert["server"] == "gone"
    assert lost in alert["message"] and "without dbsafe" in alert["message"]


def test_a_backup_finishing_while_the_repository_is_listed_is_no_vanished_manifest(
        area, cli_env):
    """The race CI met with forty agents: a backup saved its manifest and its row between
    the reconciliation's listing and its catalog read; the point was taken for one whose
    manifest vanished, dropped, and alerted on."""
    from dbsafe.services.activity import alerts
    from dbsafe.services.handle.adopt import adopt_servers
    from dbsafe.services.handle.vault_handle import Vault as Client
    from dbsafe.services.lifecycle import points

    vault = Vault(area / "vault", cli_env)
    vault.ok("vault", "init")
    first, racing = "20240101T000000Z-0000000a", "20240102T000000Z-0000000b"
    _point(vault.path, first)
    assert adopt_servers(Client.open(vault.path))["adopted"] == ["gone"]

    client = Client.open(vault.path)
    instance_id = client.catalog.get_server("gone")["instance_id"]
    listing = client.repo.point_ids

    def listed_then_a_backup_ends() -> list[str]:
        ids = list(listing())
        _point(vault.path, racing)  # another process's backup: its manifest, then its row
        manifest, size = client.repo.load_manifest_sized(racing)
        client.catalog.add_point(instance_id, points._point_row(manifest, size))
        return ids

    client.repo.point_ids = listed_then_a_backup_ends  # type: ignore[method-assign]
    assert [p["point_id"] for p in points.list_points(client, "gone")] == [first, racing]
    assert alerts.list_alerts(client.catalog) == []
