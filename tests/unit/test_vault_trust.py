"""A repository written by someone else (no cluster needed): sealed objects swapped under
other names, zstd bombs, index files out of bounds, an index moved aside, a config rewritten
under an encrypted vault's master key, and what a crash or a race of writers leaves."""

from __future__ import annotations

import json
import os
import shutil
import struct
from pathlib import Path

import blake3
import pytest
import zstandard

from dbsafe.core.errors import DbsafeError
from dbsafe.vault.packs import read_pack_header
from dbsafe.vault.repository import BlockError, Repository

MASTER = bytes(range(32))
SYSID = "7300000000000000001"


def _config(root: Path) -> dict:
    return json.loads((root / "config").read_text())


def _seal_v1(root: Path, kind: bytes, document: object, payload: bytes | None = None) -> bytes:
    """A version-1 plain sealed object, as vaults hold from before (or as anyone who can
    read a plain vault's config can forge one)."""
    key = bytes.fromhex(_config(root)["id_key"])
    if payload is None:
        payload = zstandard.ZstdCompressor().compress(json.dumps(document).encode())
    return b"DBSAFE1\n" + kind + blake3.blake3(payload, key=key).digest() + payload


def _declares(size: int, content: bytes = b"{}") -> bytes:
    """A zstd frame that declares ``size`` bytes and holds ``content`` (a raw block)."""
    header = struct.pack("<I", 0xFD2FB528) + bytes([0b11100000]) + struct.pack("<Q", size)
    block = (1 | (len(content) << 3)).to_bytes(3, "little")  # last block, raw
    return header + block + content


def _manifest(point_id: str, blocks: list[str] | None = None) -> dict:
    return {"point_id": point_id, "files": [{"path": "f", "blocks": blocks or []}],
            "wal": []}


def _store(repo: Repository, blocks: list[bytes]) -> list[bytes]:
    with repo.writing("test"):
        sink = repo.block_sink(level=1)
        ids = [sink.store(b)[0] for b in blocks]
        sink.close()
    return ids


@pytest.fixture
def root(tmp_path) -> Path:
    Repository.init(tmp_path / "vault")
    return tmp_path / "vault"


@pytest.fixture
def enc_root(tmp_path) -> Path:
    Repository.init(tmp_path / "enc", master=MASTER)
    return tmp_path / "enc"


# sealed objects bound to their names -----------------------------------------------------
@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
def test_a_manifest_copied_over_another_point_is_refused(root, enc_root, encrypted):
    where = enc_root if encrypted else root
    repo = Repository.open(where, master=lambda: MASTER)
    old, new = "20240101T000000Z-00000001", "20240102T000000Z-00000002"
    repo.save_manifest(_manifest(old))
    repo.save_manifest(_manifest(new))
    shutil.copyfile(where / "manifests" / old, where / "manifests" / new)
    fresh = Repository.open(where, master=lambda: MASTER)
    assert fresh.load_manifest_whole(old)["point_id"] == old
    with pytest.raises(DbsafeError) as exc:
        fresh.load_manifest_whole(new)
    assert exc.value.code == "vault.object_corrupt" and new in exc.value.message


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
def test_a_wal_record_copied_under_another_name_or_lineage_is_refused(root, enc_root,
                                                                      encrypted):
    where = enc_root if encrypted else root
    repo = Repository.open(where, master=lambda: MASTER)
    first, second = "000000010000000000000001", "000000010000000000000002"
    for name in (first, second):
        repo.save_wal_record(SYSID, {"name": name, "blocks": [], "size": 0})
    folder = where / "wal" / SYSID
    shutil.copyfile(folder / first, folder / second)
    other = where / "wal" / "7300000000000000002"  # another cluster's chain, same file name
    other.mkdir()
    shutil.copyfile(folder / first, other / first)
    fresh = Repository.open(where, master=lambda: MASTER)
    assert fresh.load_wal_record(SYSID, first)["name"] == first
    for system_id, name in ((SYSID, second), (other.name, first)):
        with pytest.raises(DbsafeError) as exc:
            fresh.load_wal_record(system_id, name)
        assert exc.value.code == "vault.object_corrupt"


def test_version_1_objects_are_read_where_they_name_themselves(root):
    point = "20230101T000000Z-0000000a"
    (root / "manifests").mkdir()
    (root / "manifests" / point).write_bytes(_seal_v1(root, b"M", _manifest(point)))
    repo = Repository.open(root)
    assert repo.load_manifest_whole(point)["point_id"] == point
    shutil.copyfile(root / "manifests" / point, root / "manifests" / "20240101T000000Z-0000000b")
    with pytest.raises(DbsafeError) as exc:
        repo.load_manifest_whole("20240101T000000Z-0000000b")
    assert exc.value.code == "vault.object_corrupt"


# decompressed sizes ----------------------------------------------------------------------
def test_a_manifest_declaring_a_terabyte_is_refused_before_allocating(root):
    point = "20240101T000000Z-000000bb"
    (root / "manifests").mkdir()
    (root / "manifests" / point).write_bytes(
        _seal_v1(root, b"M", None, payload=_declares(1 << 40)))
    with pytest.raises(DbsafeError) as exc:
        Repository.open(root).load_manifest_whole(point)
    assert exc.value.code == "vault.object_corrupt" and "declares" in exc.value.message


def test_a_real_zstd_bomb_in_a_wal_record_is_refused(root):
    """300 MiB of zeros in a 10 KiB frame, where a WAL record may hold 64 MiB at most."""
    out = zstandard.ZstdCompressor(level=1).compressobj(size=300 << 20)
    zeros = bytes(1 << 20)
    bomb = b"".join(out.compress(zeros) for _ in range(300)) + out.flush()
    assert len(bomb) < 64 << 10
    name = "000000010000000000000003"
    (root / "wal" / SYSID).mkdir(parents=True)
    (root / "wal" / SYSID / name).write_bytes(_seal_v1(root, b"W", None, payload=bomb))
    with pytest.raises(DbsafeError) as exc:
        Repository.open(root).load_wal_record(SYSID, name)
    assert exc.value.code == "vault.object_corrupt"


def test_a_pack_header_bomb_makes_the_pack_unreadable_not_huge(root):
    (root / "data" / "ab").mkdir(parents=True)
    pack_id = "ab" + "0" * 30
    header = _declares(1 << 40)
    (root / "data" / "ab" / pack_id).write_bytes(
        header + struct.pack("<I", len(header)) + b"DBSPACK1")
    with pytest.raises(ValueError):
        read_pack_header(Repository.open(root).storage, pack_id)


def test_an_index_file_out_of_bounds_is_refused(root):
    """raw_length beyond the block size, as a forged plain index file may say: refused when
    the index is loaded, before a reader allocates anything for it."""
    repo = Repository.open(root)
    (block_id,) = _store(repo, [os.urandom(20_000)])
    (index_file,) = (root / "index").iterdir()
    doc = repo.load_index_file(index_file.name)
    entry = doc["blobs"][0]
    for bad in ([entry[0], entry[1], entry[2], 1 << 40, 1],      # raw_length: a terabyte
                [entry[0], entry[1], 1 << 40, entry[3], entry[4]]):  # length to pread
        index_file.write_bytes(_seal_v1(root, b"I", {**doc, "blobs": [bad]}))
        fresh = Repository.open(root)
        with pytest.raises(DbsafeError) as exc:
            fresh.read_block(block_id)
        assert exc.value.code == "vault.object_corrupt"


def test_a_blob_frame_declaring_more_than_its_raw_length_is_corrupt(root):
    repo = Repository.open(root)
    block = b"x" * 50_000
    (block_id,) = _store(repo, [block])
    (pack,) = (root / "data").rglob("*/*")
    (index_file,) = (root / "index").iterdir()
    _id, offset, length, raw_length, codec = repo.load_index_file(index_file.name)["blobs"][0]
    assert codec == 1
    data = bytearray(pack.read_bytes())
    data[offset:offset + length] = _declares(1 << 40, bytes(length - 16))
    pack.write_bytes(bytes(data))
    with pytest.raises(BlockError) as exc:
        Repository.open(root).read_block(block_id)
    assert exc.value.kind == "corrupt"


# index/ moved aside ----------------------------------------------------------------------
def test_an_index_moved_aside_stops_writers_and_readers(root, tmp_path):
    repo = Repository.open(root)
    ids = _store(repo, [os.urandom(30_000) for _ in range(3)])
    (root / "index").rename(tmp_path / "index.away")
    fresh = Repository.open(root)
    with pytest.raises(DbsafeError) as exc, fresh.writing("backup"):
        pass
    assert exc.value.code == "vault.index_missing"
    with pytest.raises(DbsafeError) as exc:
        fresh.read_block(ids[0])
    assert exc.value.code == "vault.index_missing"
    (tmp_path / "index.away").rename(root / "index")
    assert Repository.open(root).read_block(ids[0])


def test_a_long_running_writer_notices_the_index_vanish(root, tmp_path):
    agent = Repository.open(root)
    _store(agent, [os.urandom(30_000)])  # the agent's index knows the pack
    (root / "index").rename(tmp_path / "index.away")
    with pytest.raises(DbsafeError) as exc, agent.writing("archive"):
        pass
    assert exc.value.code == "vault.index_missing"
    assert not list((root / "data").rglob("*/*"))[1:]  # nothing stored again


# config, authenticated under the master key -----------------------------------------------
def _rewrite_config(where: Path, **changes) -> None:
    config = _config(where)
    for key, value in changes.items():
        if key == "encryption":
            config["encryption"] = {**config["encryption"], **value}
        else:
            config[key] = value
    (where / "config").write_text(json.dumps(config))


def test_an_encrypted_config_rewritten_fails_its_mac(enc_root):
    assert _config(enc_root)["encryption"]["mac"]
    _rewrite_config(enc_root, region="West Europe")  # a change nobody authenticated
    with pytest.raises(DbsafeError) as exc:
        Repository.open(enc_root, master=lambda: MASTER).keyed  # noqa: B018 - opens the keys
    assert exc.value.code == "vault.tampered"


def test_a_config_without_mac_gets_one_and_a_pinned_client_refuses_losing_it(enc_root):
    """A vault made before macs: its first writer authenticates config; a client that saw
    it authenticated refuses a config stripped of it."""
    config = _config(enc_root)
    del config["encryption"]["mac"]
    (enc_root / "config").write_text(json.dumps(config))
    seen = []
    repo = Repository.open(enc_root, master=lambda: MASTER)
    repo.on_config_verified = lambda: seen.append(True)
    with repo.writing("backup"):
        pass
    assert _config(enc_root)["encryption"]["mac"] and seen
    (enc_root / "config").write_text(json.dumps(config))  # stripped again
    pinned = Repository.open(enc_root, master=lambda: MASTER)
    pinned.require_mac = True
    with pytest.raises(DbsafeError) as exc:
        pinned.keyed  # noqa: B018
    assert exc.value.code == "vault.tampered"


@pytest.mark.parametrize("change", ["plain", "vault_id", "key_check", "block_size"])
def test_a_running_writer_refuses_a_config_rewritten_under_it(enc_root, change):
    agent = Repository.open(enc_root, master=lambda: MASTER)
    _store(agent, [os.urandom(10_000)])
    rewrite = {"plain": {"encryption": None, "id_key": "00" * 32},
               "vault_id": {"vault_id": "ff" * 16},
               "key_check": {"encryption": {"key_check": "00" * 32}},
               "block_size": {"block_size": 8192}}[change]
    config = _config(enc_root)
    if change == "key_check":
        config["encryption"].update(rewrite["encryption"])
    else:
        config.update(rewrite)
    (enc_root / "config").write_text(json.dumps(config))
    with pytest.raises(DbsafeError) as exc, agent.writing("archive"):
        pass
    assert exc.value.code == "vault.tampered"
    assert not [p for p in enc_root.rglob("*") if p.is_file()
                and p.read_bytes()[:8] in (b"DBSAFE1\n", b"DBSAFE2\n")]


def test_a_region_given_by_another_client_is_taken(enc_root):
    agent = Repository.open(enc_root, master=lambda: MASTER)
    _store(agent, [os.urandom(10_000)])
    Repository.open(enc_root, master=lambda: MASTER).set_region("West Europe")
    with agent.writing("archive"):
        pass
    assert agent.config["region"] == "West Europe"


# master rotation ---------------------------------------------------------------------------
NEW_MASTER = bytes(range(100, 132))


def test_a_master_rotation_keeps_ids_and_data_and_refuses_the_old_key(enc_root):
    repo = Repository.open(enc_root, master=lambda: MASTER)
    blocks = [os.urandom(20_000) for _ in range(3)]
    ids = _store(repo, blocks)
    repo.save_manifest(_manifest("20240101T000000Z-00000001", [i.hex() for i in ids]))
    new_key = repo.rotate_master(NEW_MASTER)
    assert repo.data_key_ids()[-1] == new_key and len(repo.data_key_ids()) == 2
    assert all("next" not in json.loads(p.read_text()) for p in (enc_root / "keys").iterdir())
    with pytest.raises(DbsafeError) as exc:
        Repository.open(enc_root, master=lambda: MASTER).keyed  # noqa: B018
    assert exc.value.code == "key.wrong"
    fresh = Repository.open(enc_root, master=lambda: NEW_MASTER)
    assert [fresh.read_block(i) for i in ids] == blocks
    assert fresh.load_manifest_whole("20240101T000000Z-00000001")["files"][0]["blocks"] == \
        [i.hex() for i in ids]
    assert [fresh.keyed.digest(b) for b in blocks] == ids  # deduplication goes on
    assert _store(fresh, blocks[:1]) == ids[:1]


@pytest.mark.parametrize("dies_at", ["config", "settle"])
def test_a_master_rotation_that_dies_leaves_a_vault_one_key_opens(enc_root, monkeypatch,
                                                                  dies_at):
    repo = Repository.open(enc_root, master=lambda: MASTER)
    ids = _store(repo, [os.urandom(20_000)])
    target = {"config": (Repository, "_store_config"),
              "settle": ("dbsafe.vault.crypto.settle_next_wrap", None)}[dies_at]

    def die(*_a, **_k):
        raise OSError("killed")

    if target[1] is None:
        monkeypatch.setattr(target[0], die)
    else:
        monkeypatch.setattr(*target, die)
    with pytest.raises(OSError):
        repo.rotate_master(NEW_MASTER)
    monkeypatch.undo()
    opens = MASTER if dies_at == "config" else NEW_MASTER
    assert Repository.open(enc_root, master=lambda: opens).read_block(ids[0])


def test_a_key_file_of_a_rotation_that_died_is_taken(enc_root, tmp_path, monkeypatch):
    from dbsafe.services.handle import keys
    from dbsafe.vault import crypto

    monkeypatch.setenv("DBSAFE_KEY_DIR", str(tmp_path / "keys"))
    vault_id = _config(enc_root)["vault_id"]
    keys.store_key(tmp_path, vault_id, crypto.wrap_master(MASTER, vault_id, None))
    path = keys.default_key_path(vault_id)
    keys.write_key_file(path.with_name(path.name + keys.PENDING),
                        crypto.wrap_master(NEW_MASTER, vault_id, None))
    repo = Repository.open(enc_root, master=lambda: MASTER)
    repo.rotate_master(NEW_MASTER)  # the vault took the new key; the key file was not moved
    load = keys.master_source(tmp_path, {}, vault_id,
                              lambda: _config(enc_root)["encryption"]["key_check"])
    assert load() == NEW_MASTER
    assert json.loads(path.read_text())["master_key"] == NEW_MASTER.hex()
    assert not path.with_name(path.name + keys.PENDING).exists()


# key files: old KDF parameters, strength of new passphrases --------------------------------
def test_a_scrypt_key_file_of_before_still_opens():
    import base64

    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    from dbsafe.vault import crypto

    salt, vault_id = os.urandom(16), "cd" * 16
    kek = Scrypt(salt=salt, length=32, n=1 << 15, r=8, p=1).derive(b"an old long passphrase")
    doc = {"dbsafe_key": 1, "vault_id": vault_id,
           "kdf": {"name": "scrypt", "n": 1 << 15, "r": 8, "p": 1,
                   "salt": base64.b64encode(salt).decode()},
           "wrapped": base64.b64encode(crypto.encrypt(
               kek, MASTER, b"dbsafe master key " + vault_id.encode())).decode()}
    assert crypto.unwrap_master(doc, "an old long passphrase") == MASTER
    doc["kdf"]["n"] = 1 << 30  # a hostile file asking for 128 GiB
    with pytest.raises(crypto.CryptoError):
        crypto.unwrap_master(doc, "an old long passphrase")


@pytest.mark.parametrize("weak", ["short", "aaaaaaaaaaaaaaaaaaaa", "123456789012345678",
                                  "password1234", "abcdefghijkl", "abababababababab"])
def test_weak_passphrases_are_refused(weak):
    from dbsafe.core.secrets_input import check_passphrase

    with pytest.raises(DbsafeError) as exc:
        check_passphrase(weak)
    assert exc.value.code == "key.passphrase_weak"


@pytest.mark.parametrize("good", ["correct horse battery staple", "Tr0ub4dor&3xy",
                                  "backend suite passphrase 314159"])
def test_ordinary_passphrases_pass(good):
    from dbsafe.core.secrets_input import check_passphrase

    check_passphrase(good)


# writer locks: whose liveness a client may judge -------------------------------------------
def _dead_pid() -> int:
    import subprocess

    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _unused_pack(repo: Repository) -> set[str]:
    """A pack no manifest uses (garbage, unless a running writer reuses it)."""
    _store(repo, [os.urandom(30_000) for _ in range(2)])
    return {p.name for p in (repo.storage.root / "data").rglob("*/*")}


def test_gc_spares_packs_of_a_live_writer_of_another_client_with_the_same_host(tmp_path,
                                                                              monkeypatch):
    """Two clients of one vault on two machines with the same host name (cloned VMs, pods):
    the other client's writer runs under a pid that is dead here. Its lock is not this
    client's to judge by pid: gc waits for it instead of deleting what it may reuse."""
    from dbsafe.services.handle.vault_handle import Vault
    from dbsafe.vault.gc import collect_garbage

    here = Vault.init(tmp_path / "a")
    there = Vault.connect(tmp_path / "b", str(tmp_path / "a"))
    packs = _unused_pack(here.repo)
    elsewhere = _dead_pid()
    with monkeypatch.context() as m:  # its lock is made as on the other machine
        m.setattr(os, "getpid", lambda: elsewhere)
        writing = there.repo.writing("backup")
        writing.__enter__()
    try:
        assert there.repo.index  # it may deduplicate against the unused pack now
        out = collect_garbage(Vault.open(tmp_path / "a").repo)
        assert out["packs_deleted"] == 0 and out["stale_locks_removed"] == 0
        assert {p.name for p in (tmp_path / "a" / "data").rglob("*/*")} == packs
        assert [w["pid"] for w in out["waiting_for"]] == [elsewhere]
    finally:
        writing.__exit__(None, None, None)
    assert collect_garbage(Vault.open(tmp_path / "a").repo)["packs_deleted"] == 1


def test_a_cloned_client_is_judged_by_its_heartbeat(root, monkeypatch):
    """A lock of this client id from another scope (a clone of the client folder on another
    VM, or this machine before a reboot): alive while its heartbeat is fresh, stale after
    ``STALE_SECONDS`` without one, whatever its pid says here."""
    from dbsafe.vault import locks

    repo = Repository.open(root, client_id="0123456789abcdef")
    name = f"0123456789abcdef-{'e' * 12}-{_dead_pid()}-abcdef"
    (root / "locks").mkdir()
    lock_file = root / "locks" / name
    lock_file.write_text(json.dumps({"client": "0123456789abcdef", "refreshed": locks._now()}))
    assert locks.lock_alive(repo.storage, name, repo.client_id)
    old = "2020-01-01T00:00:00.000+00:00"
    lock_file.write_text(json.dumps({"client": "0123456789abcdef", "refreshed": old}))
    assert not locks.lock_alive(repo.storage, name, repo.client_id)
    assert locks.remove_stale(repo.storage, repo.client_id) == 1


def test_a_writer_whose_heartbeat_lapsed_does_not_commit(root, monkeypatch):
    from dbsafe.vault import locks

    monkeypatch.setattr(locks, "REFRESH_SECONDS", 0.05)
    repo = Repository.open(root)
    with pytest.raises(DbsafeError) as exc, repo.writing("backup"):
        ids = [i.hex() for i in _store_in(repo, [os.urandom(1000)])]
        lock = repo._local.lock
        lock._refreshed -= locks.STALE_SECONDS  # as if the process had been stopped that long
        repo.save_manifest(_manifest("20240101T000000Z-00000001", ids))
    assert exc.value.code == "vault.lock_lost"
    assert not (root / "manifests").exists()


def test_a_writer_refreshes_its_lock_and_loses_it_when_removed(root, monkeypatch):
    import time

    from dbsafe.vault import locks

    monkeypatch.setattr(locks, "REFRESH_SECONDS", 0.05)
    repo = Repository.open(root)
    with pytest.raises(DbsafeError) as exc, repo.writing("backup"):
        (lock_file,) = (root / "locks").iterdir()
        first = json.loads(lock_file.read_text())["refreshed"]
        deadline = time.monotonic() + 30
        while json.loads(lock_file.read_text())["refreshed"] == first:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        lock_file.unlink()  # another client called it stale
        while repo._local.lock._lost is None:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        repo.save_manifest(_manifest("20240101T000000Z-00000001"))
    assert exc.value.code == "vault.lock_lost"


def _store_in(repo: Repository, blocks: list[bytes]) -> list[bytes]:
    sink = repo.block_sink(level=1)
    ids = [sink.store(b)[0] for b in blocks]
    sink.close()
    return ids


def test_tmp_files_of_another_scope_are_kept_until_idle(root):
    import time

    from dbsafe.core.concurrency import pid_scope

    repo = Repository.open(root)
    tmp = root / "tmp"
    tmp.mkdir(exist_ok=True)
    mine_dead = tmp / f"{pid_scope()}-{_dead_pid()}-aa"
    clone = tmp / f"{'e' * 12}-{_dead_pid()}-bb"   # a clone's writer, same pids maybe
    legacy = tmp / f"somehost-{_dead_pid()}-cc"       # an older dbsafe's, named by host
    for f in (mine_dead, clone, legacy):
        f.write_bytes(b"x")
    assert repo.storage.cleanup() == 1 and not mine_dead.exists()
    day_ago = time.time() - 25 * 3600
    os.utime(legacy, (day_ago, day_ago))
    assert repo.storage.cleanup() == 1 and clone.exists() and not legacy.exists()


# the local folder: owner only, durable folders ---------------------------------------------
def test_a_local_vault_is_its_owners_alone(root):
    repo = Repository.open(root)
    _store(repo, [os.urandom(10_000)])
    repo.save_manifest(_manifest("20240101T000000Z-00000001"))
    repo.save_wal_record(SYSID, {"name": "000000010000000000000001", "blocks": [], "size": 0})
    files = [p for p in root.rglob("*") if p.is_file()]
    assert {p.parts[len(root.parts)] for p in files} >= {"data", "index", "manifests", "wal"}
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in files), \
        {str(p): oct(p.stat().st_mode) for p in files}
    folders = [p for p in root.rglob("*") if p.is_dir()]
    assert all(p.stat().st_mode & 0o777 == 0o700 for p in folders)


def test_an_existing_vault_folder_is_tightened_when_opened(root):
    os.chmod(root, 0o755)
    Repository.open(root)
    assert root.stat().st_mode & 0o777 == 0o700


def test_the_first_wal_record_of_a_lineage_makes_its_folders_durable(root, monkeypatch):
    """``wal/`` and ``wal/<system id>/`` are new: each is fsynced in its parent (the vault
    folder, then ``wal/``) and the record's folder after the rename, before it counts."""
    synced: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    repo = Repository.open(root)
    monkeypatch.setattr(os, "fsync", fsync)
    repo.save_wal_record(SYSID, {"name": "000000010000000000000001", "blocks": [], "size": 0})
    folders = [s for s in synced if Path(s).is_dir()]
    assert folders == [str(root), str(root / "wal"), str(root / "wal" / SYSID)], synced


# a shared folder: links, FIFOs and other files planted under object names -----------------
def test_links_and_fifos_planted_as_objects_are_never_followed(root, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("keep me")
    (root / "manifests").mkdir()
    (root / "manifests" / "20240101T000000Z-0000000a").symlink_to(outside / "victim")
    os.mkfifo(root / "manifests" / "20240101T000000Z-0000000b")  # a read would block
    repo = Repository.open(root)
    assert repo.point_ids() == []
    for point in ("20240101T000000Z-0000000a", "20240101T000000Z-0000000b"):
        with pytest.raises(KeyError):
            repo.load_manifest_whole(point)
    (root / "wal").symlink_to(outside, target_is_directory=True)  # a folder swapped
    assert list(repo.storage.list("wal")) == [] and repo.storage.names("wal") == []
    assert repo.load_wal_record("..", "victim") is None
    repo.storage.delete("wal/victim")
    with pytest.raises(FileNotFoundError):
        repo.save_wal_record(SYSID, {"name": "000000010000000000000001", "blocks": []})
    assert [p.name for p in outside.iterdir()] == ["victim"]
    assert (outside / "victim").read_text() == "keep me"


def test_gc_deletes_nothing_through_an_index_folder_swapped_for_a_link(root, tmp_path):
    """A plain vault on a share: ``index/`` replaced by a link to another folder, and a real
    (unused) pack planted under the name of a file there. Garbage collection would delete
    the pack's "index file", that is the file elsewhere; it must refuse instead."""
    from dbsafe.vault.gc import collect_garbage

    repo = Repository.open(root)
    _store(repo, [os.urandom(30_000)])  # an unused pack
    (pack,) = (root / "data").rglob("*/*")
    (root / "data" / "vi").mkdir()
    pack.rename(root / "data" / "vi" / "victim")
    outside = tmp_path / "etc"
    outside.mkdir()
    (outside / "victim").write_text("keep me")
    shutil.rmtree(root / "index")
    (root / "index").symlink_to(outside, target_is_directory=True)
    with pytest.raises(DbsafeError) as exc:
        collect_garbage(Repository.open(root))
    assert exc.value.code == "vault.index_missing"
    assert (outside / "victim").read_text() == "keep me"


def test_an_encrypted_vault_of_before_keeps_its_ids_and_objects_through_a_rotation(enc_root):
    """A vault made before id keys were stored and configs authenticated: its block ids are
    keyed by a key derived from its first master key, its objects are version-1 seals. Its
    first writer authenticates its config; a master rotation stores the derived id key
    wrapped, so ids, deduplication and old objects all survive it."""
    from dbsafe.vault import crypto

    config = _config(enc_root)
    for field in ("id_key", "mac"):
        del config["encryption"][field]
    (enc_root / "config").write_text(json.dumps(config))
    repo = Repository.open(enc_root, master=lambda: MASTER)
    block = os.urandom(20_000)
    (block_id,) = _store(repo, [block])  # the writer also adds the mac
    assert block_id == blake3.blake3(block, key=crypto.derive_id_key(MASTER)).digest()
    assert _config(enc_root)["encryption"]["mac"]
    key_id = repo.data_key_ids()[0]
    point = "20230101T000000Z-0000000e"
    payload = zstandard.ZstdCompressor().compress(json.dumps(
        _manifest(point, [block_id.hex()])).encode())
    head = b"DBSAFEE\nM" + key_id.encode()
    (enc_root / "manifests").mkdir()
    (enc_root / "manifests" / point).write_bytes(
        head + crypto.encrypt(repo.keyed.ring.key(key_id), payload, head))
    repo.rotate_master(NEW_MASTER)
    fresh = Repository.open(enc_root, master=lambda: NEW_MASTER)
    assert fresh.load_manifest_whole(point)["files"][0]["blocks"] == [block_id.hex()]
    assert fresh.read_block(block_id) == block
    assert fresh.keyed.digest(block) == block_id
