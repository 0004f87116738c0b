"""One vault repository: open or create it, write blocks and manifests, read them back verified.

It trusts nothing it reads from the storage: ``config`` is checked for form (and, in an
encrypted vault, its authentication under the master key), index files for the bounds of
every blob, sealed objects for their binding to this vault and their names; a long-lived
writer reads ``config`` again before each write. What a client pins of the vault is the
client's business (services/handle/vault_handle.py); ``trust_fields`` says what.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import secrets
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import zstandard

from dbsafe.core.errors import DbsafeError
from dbsafe.storage.base import Storage
from dbsafe.storage.local import LocalStorage
from dbsafe.vault import crypto, entries
from dbsafe.vault.blocks import BlockSink
from dbsafe.vault.format import (
    CODEC_ZSTD,
    FORMAT,
    KIND_INDEX,
    KIND_MANIFEST,
    KIND_PART,
    KIND_WAL,
    Keyed,
    SealError,
    config_problem,
    decompress_bounded,
    new_config,
    trust_differences,
    trust_fields,
)
from dbsafe.vault.gc import held_packs
from dbsafe.vault.index import CACHE_NAME, BlobIndex, BlobLocation
from dbsafe.vault.locks import PROCESS_CLIENT, WriterLock
from dbsafe.vault.packs import BlockError as BlockError  # re-exported: its readers catch it
from dbsafe.vault.packs import pack_name
from dbsafe.vault.records import FileEntry, IndexFile, Manifest, WalRecord

KEYS = "keys"


SAVE_AFTER = 20_000  # blocks read from index files that make a run save the table


def _storage(where: Storage | Path | str) -> Storage:
    return LocalStorage(Path(where)) if isinstance(where, (str, Path)) else where


def _dump(config: dict[str, Any]) -> bytes:
    return json.dumps(config, indent=2).encode()


def _first(names: Iterator[str]) -> str | None:
    return next(iter(names), None)


TAMPERED_ACTION = ("if nobody changed it on purpose, someone who can write the storage "
                   "did: put back the original from a copy and check who can write there")


class Repository:
    """``master``: for an encrypted vault, a function returning the master key, called the
    first time the vault's keys are needed (listing points needs none; reading or writing
    data does), so commands that touch no data never ask for a passphrase."""

    def __init__(self, storage: Storage, config: dict[str, Any],
                 master: Callable[[], bytes] | None = None, *,
                 client_id: str | None = None, client_dir: Path | None = None) -> None:
        self.storage = storage
        self.config = config
        self.block_size: int = config["block_size"]
        # names this client's writer locks (vault/locks.py); random per process without one
        self.client_id = client_id or PROCESS_CLIENT
        # An encrypted vault's config carries a mac (``encryption.mac``); one made before
        # macs existed gets it from its first writer. A client that once saw it verified
        # sets ``require_mac`` and is told (``on_config_verified``) when it is.
        self.require_mac = False
        self.on_config_verified: Callable[[], None] | None = None
        self._mac_missing = False
        self._master = master
        self._keyed: Keyed | None = None
        self._keys_lock = threading.Lock()
        self._index: BlobIndex | None = None
        self._index_lock = threading.Lock()
        # the block index's table, kept by the client (vault/index.py); none: in memory
        self._index_cache = client_dir / CACHE_NAME if client_dir is not None else None
        self._local = threading.local()

    @property
    def location(self) -> str:
        return self.storage.describe()["location"]

    @property
    def encrypted(self) -> bool:
        return bool(self.config.get("encryption"))

    @property
    def vault_id(self) -> str:
        vault_id: str = self.config["vault_id"]
        return vault_id

    # lifecycle -----------------------------------------------------------------------
    @classmethod
    def init(cls, where: Storage | Path | str, region: str | None = None,
             master: bytes | None = None, *, client_id: str | None = None) -> Repository:
        """A new vault; encrypted when given a master key: its id key (random) is kept in
        ``config`` wrapped by the master key, its first data key is stored, and ``config``
        is authenticated (``encryption.mac``)."""
        storage = _storage(where)
        if storage.exists("config"):
            raise DbsafeError("vault.exists", path=storage.describe()["location"])
        config = new_config(region, encryption={"cipher": crypto.CIPHER} if master else None)
        if master is not None:
            vault_id = config["vault_id"]
            config["encryption"].update(
                key_check=crypto.key_check(master, vault_id),
                id_key=crypto.wrap_id_key(master, vault_id, secrets.token_bytes(32)))
            config["encryption"]["mac"] = crypto.config_mac(master, config)
            key_id = crypto.new_key_id()
            storage.put(f"{KEYS}/{key_id}",
                        crypto.wrap_data_key(master, key_id, secrets.token_bytes(32)))
        storage.put("config", _dump(config))
        return cls(storage, config, (lambda: master) if master is not None else None,
                   client_id=client_id)

    @classmethod
    def open(cls, where: Storage | Path | str, master: Callable[[], bytes] | None = None,
             *, client_id: str | None = None, client_dir: Path | None = None) -> Repository:
        """``client_dir``: the client's folder (*Clients*), where the block index's table is
        kept between runs (vault/index.py)."""
        storage = _storage(where)
        return cls(storage, cls._read_config(storage), master, client_id=client_id,
                   client_dir=client_dir)

    @staticmethod
    def _read_config(storage: Storage) -> dict[str, Any]:
        where = storage.describe()["location"]
        try:
            config = json.loads(storage.get("config"))
        except FileNotFoundError:
            raise DbsafeError("vault.not_initialised", path=where) from None
        except ValueError:
            raise DbsafeError("vault.object_corrupt", path=f"{where}/config",
                              reason="not JSON") from None
        if isinstance(config, dict) and config.get("format") != FORMAT:
            raise DbsafeError("vault.format_unsupported", path=where,
                              found=config.get("format"), expected=FORMAT)
        problem = config_problem(config)
        if problem is not None:
            raise DbsafeError("vault.object_corrupt", path=f"{where}/config", reason=problem)
        checked: dict[str, Any] = config
        return checked

    def recheck_config(self) -> None:
        """Read ``config`` again and refuse (``vault.tampered``) when what a client pins of
        it changed since this handle opened it, or when it no longer authenticates: a
        long-lived process (the agent, ``serve``) must not follow a rewritten config. A
        region given meanwhile (the one allowed change) is taken."""
        fresh = self._read_config(self.storage)
        differences = trust_differences(trust_fields(self.config), trust_fields(fresh))
        if differences:
            raise DbsafeError("vault.tampered", path=self.location,
                              what="config changed under a running process: "
                                   + "; ".join(differences), action=TAMPERED_ACTION)
        if fresh == self.config:
            return
        if self.encrypted and self._keyed is not None:
            self._verify_config(self._keyed.ring.master, fresh)  # type: ignore[union-attr]
        self.config = fresh

    def set_region(self, region: str) -> None:
        """Give a vault created without a region its region: once (docs, *config*). An
        encrypted vault's config is authenticated again, which needs the master key."""
        if self.config.get("region") is not None:
            raise DbsafeError("vault.region_fixed", region=self.config["region"])
        config = {**self.config, "region": region}
        if self.encrypted:
            self._store_config(config, self.master_key())
        else:
            self.storage.put("config", _dump(config))
            self.config = config

    def _store_config(self, config: dict[str, Any], master: bytes) -> None:
        """Replace an encrypted vault's config, authenticated under ``master``."""
        encryption = {k: v for k, v in config["encryption"].items() if k != "mac"}
        config = {**config, "encryption": encryption}
        config["encryption"]["mac"] = crypto.config_mac(master, config)
        self.storage.put("config", _dump(config))
        self.config = config
        self._mac_missing = False
        if self.on_config_verified is not None:
            self.on_config_verified()

    # keys (docs/repository-format.md, *Encryption*) ------------------------------------
    @property
    def keyed(self) -> Keyed:
        """The vault's keyed hash and codec; in an encrypted vault this unwraps the keys
        (asking for the master key) the first time."""
        if self._keyed is None:
            with self._keys_lock:
                if self._keyed is None:
                    self._keyed = self._open_keys()
        return self._keyed

    def _open_keys(self) -> Keyed:
        if not self.encrypted:
            return Keyed(bytes.fromhex(self.config["id_key"]), vault_id=self.vault_id)
        if self._master is None:
            raise DbsafeError("key.missing", vault_id=self.vault_id)
        master = self._master()
        self.check_master(master)
        self._verify_config(master, self.config)
        ring = crypto.KeyRing(master, self._load_data_key, self._newest_data_key(),
                              self._id_key(master))
        return Keyed(ring.id_key, ring, vault_id=self.vault_id)

    def _verify_config(self, master: bytes, config: dict[str, Any]) -> None:
        """Refuse an encrypted vault's config whose mac fails (``vault.tampered``), or that
        lost its mac where this client saw one; note a config made before macs existed."""
        mac = config["encryption"].get("mac")
        if mac is None:
            if self.require_mac:
                raise DbsafeError("vault.tampered", path=self.location,
                                  what="config lost the authentication it had",
                                  action=TAMPERED_ACTION)
            self._mac_missing = True
            return
        if not hmac.compare_digest(crypto.config_mac(master, config), str(mac)):
            raise DbsafeError("vault.tampered", path=self.location,
                              what="config fails its authentication under the master key",
                              action=TAMPERED_ACTION)
        self._mac_missing = False
        if self.on_config_verified is not None:
            self.on_config_verified()

    def _id_key(self, master: bytes) -> bytes:
        wrapped = self.config["encryption"].get("id_key")
        if wrapped is None:  # a vault made before id keys were stored
            return crypto.derive_id_key(master)
        try:
            return crypto.unwrap_id_key(master, self.vault_id, wrapped)
        except (crypto.CryptoError, ValueError):
            raise DbsafeError("vault.object_corrupt", path="config",
                              reason="its wrapped id key does not open") from None

    def use_master(self, master: Callable[[], bytes]) -> None:
        """Where this client's master key comes from (asked when the keys are first needed)."""
        with self._keys_lock:
            self._master = master
            self._keyed = None

    def master_key(self) -> bytes:
        """The master key of an encrypted vault (opening its keys, once, if not yet)."""
        ring = self.keyed.ring
        if ring is None:
            raise DbsafeError("key.not_encrypted")
        return ring.master

    def check_master(self, master: bytes) -> None:
        """Refuse a master key of another vault, or an old one (``key.wrong``)."""
        expected = self.config["encryption"]["key_check"]
        if not hmac.compare_digest(crypto.key_check(master, self.vault_id), expected):
            raise DbsafeError("key.wrong", vault_id=self.vault_id)

    def verify_key(self, master: bytes) -> None:
        """Check a master key against this vault: its key check, and the config's mac
        (``key import``: what the client pins then is authenticated by the key)."""
        self.check_master(master)
        self._verify_config(master, self.config)

    def data_key_ids(self) -> list[str]:
        return sorted(self.storage.names(KEYS))

    def _newest_data_key(self) -> str:
        ids = self.data_key_ids()
        if not ids:
            raise DbsafeError("vault.object_corrupt", path=KEYS, reason="no data key")
        return ids[-1]

    def _load_data_key(self, key_id: str) -> bytes:
        try:
            return self.storage.get(f"{KEYS}/{key_id}")
        except FileNotFoundError:
            raise DbsafeError("vault.object_corrupt", path=f"{KEYS}/{key_id}",
                              reason="a data key is missing") from None

    def rotate_data_key(self) -> str:
        """Start a new data key for everything written from now on; objects written with
        older keys keep naming (and using) theirs. Returns the new key's id."""
        ring = self.keyed.ring
        if ring is None:
            raise DbsafeError("key.not_encrypted")
        key_id = crypto.new_key_id()
        while key_id <= ring.current_id:  # two rotations within one second
            key_id = crypto.new_key_id()
        self.storage.put(f"{KEYS}/{key_id}",
                         crypto.wrap_data_key(ring.master, key_id, secrets.token_bytes(32)))
        ring.current_id = key_id
        return key_id

    def rotate_master(self, new_master: bytes) -> str:
        """Replace the master key (docs/repository-format.md, *Master rotation*): every
        data key gets a second wrap under the new key, ``config`` (the commit point) gets
        the new key check, the id key wrapped by the new key and a new mac, then the old
        wraps go and a new data key starts. A crash anywhere leaves a vault that one of the
        two keys opens. Returns the new data key's id."""
        ring = self.keyed.ring
        if ring is None:
            raise DbsafeError("key.not_encrypted")
        key_ids = self.data_key_ids()
        for key_id in key_ids:
            data = self._load_data_key(key_id)
            self.storage.put(f"{KEYS}/{key_id}", crypto.add_next_wrap(
                data, new_master, key_id, ring.key(key_id)))
        encryption = {**self.config["encryption"],
                      "key_check": crypto.key_check(new_master, self.vault_id),
                      "id_key": crypto.wrap_id_key(new_master, self.vault_id, ring.id_key)}
        self._store_config({**self.config, "encryption": encryption}, new_master)
        for key_id in key_ids:
            self.storage.put(f"{KEYS}/{key_id}",
                             crypto.settle_next_wrap(self._load_data_key(key_id)))
        ring.master = new_master
        return self.rotate_data_key()

    # index -----------------------------------------------------------------------------
    @property
    def index(self) -> BlobIndex:
        if self._index is None:
            self.refresh_index()
        return self._index  # type: ignore[return-value]

    def refresh_index(self) -> None:
        """Bring the index up to date with ``index/`` and the tombstones.

        New index files are added; tombstoned packs are excluded from deduplication; the
        places of packs whose index file is gone (garbage collection swept them) are
        forgotten (a block's other places stay), and the descriptors this process kept open
        on swept packs are retired (else their space is not freed). Index files read
        beyond ``SAVE_AFTER`` blocks are merged into the client's table, so that the next
        run reads only those written after it.
        """
        with self._index_lock:
            # Tombstones before index files: a sweep deletes a pack's index file before its
            # tombstone, so a pack is either still listed as held or no longer listed at all.
            held = frozenset(held_packs(self.storage))
            names = set(self.storage.names("index"))
            if not names and _first(self.storage.list("data")) is not None:
                raise DbsafeError("vault.index_missing", path=self.location)
            index = self._index or BlobIndex(self._index_cache, self.vault_id)
            known = index.pack_ids()
            gone = known - names
            if gone:
                index.drop_packs(gone)
            new = names - known
            # packs no tombstone lists first (a block in both is found in the live one)
            for pack_id in sorted(new - held) + sorted(new & held):
                self._add_index_file(index, pack_id)
            index.excluded = held
            if index.unsaved() >= SAVE_AFTER:
                index.save()
            self._index = index
            self.storage.retire(pack_name(p) for p in gone)

    def check_index(self) -> None:
        """Refuse (``vault.index_missing``) a vault whose ``index/`` is empty while ``data/``
        holds packs: a writer would store every block again, a reader find none. One
        listing request each (the first page), so it is cheap enough for every start."""
        if _first(self.storage.list("index")) is None and \
                _first(self.storage.list("data")) is not None:
            raise DbsafeError("vault.index_missing", path=self.location)

    def load_index_file(self, pack_id: str) -> IndexFile:
        """The checked record of ``index/<pack id>`` (FileNotFoundError when missing)."""
        name = f"index/{pack_id}"
        data = self.storage.get(name)
        try:
            doc = self.keyed.unseal(KIND_INDEX, data, name)
        except SealError as exc:
            raise DbsafeError("vault.object_corrupt", path=name, reason=exc) from None
        return IndexFile.parse_in(doc, name, self.block_size, self.encrypted)

    def _add_index_file(self, index: BlobIndex, pack_id: str) -> None:
        try:
            doc = self.load_index_file(pack_id)
        except FileNotFoundError:
            return  # swept meanwhile
        try:
            index.add_pack(pack_id, doc["blobs"], doc.get("key"))
        except ValueError:  # a block id that is not hex
            raise DbsafeError("vault.object_corrupt", path=f"index/{pack_id}",
                              reason="a blob id is not hex") from None

    # writing -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def writing(self, kind: str) -> Iterator[None]:
        """Hold a writer lock while storing blocks and until the manifest or WAL record that
        lists them is written (docs/repository-format.md, *Garbage collection*): garbage
        collection waits for it before deleting a pack this writer may deduplicate against.

        The lock is visible before the index is refreshed, so the refresh sees every
        tombstone written before the lock was listed by a garbage collection.
        """
        lock = WriterLock(self.storage, kind, self.client_id)
        depth = getattr(self._local, "writing", 0)
        outer = getattr(self._local, "lock", None)
        self._local.writing = depth + 1
        self._local.lock = lock
        try:
            if depth == 0:
                self.recheck_config()
            ring = self.keyed.ring
            if ring is not None and depth == 0:  # another client may have rotated the key
                ring.current_id = max(ring.current_id, self._newest_data_key())
                if self._mac_missing:  # a vault made before macs: its first writer adds one
                    self._store_config(self.config, ring.master)
            self.refresh_index()
            yield
        finally:
            self._local.writing = depth
            self._local.lock = outer
            lock.release()

    def _check_lock(self) -> None:
        """Before a commit: this writer's lock must not have gone stale (vault/locks.py)."""
        lock = getattr(self._local, "lock", None)
        if lock is not None:
            lock.check()

    def block_sink(self, level: int) -> BlockSink:
        """A sink for new blocks; only inside ``writing()`` (the lock that keeps garbage
        collection from deleting what the sink deduplicates against)."""
        if not getattr(self._local, "writing", 0):
            raise RuntimeError("block_sink() needs `with repo.writing(kind):` around the write")
        self.storage.cleanup()
        return BlockSink(self.storage, self.keyed, self.index, level, self.block_size)

    def file_checksum(self, block_ids: list[bytes]) -> str:
        return self.keyed.digest(b"".join(block_ids)).hex()

    def save_manifest(self, manifest: Manifest | dict[str, Any]) -> int:
        """Write the manifest (the backup's commit point); returns its size in bytes."""
        name = f"manifests/{manifest['point_id']}"
        sealed = self.keyed.seal(KIND_MANIFEST, manifest, name)
        self._check_lock()
        self.storage.put(name, sealed)
        return len(sealed)

    def save_part(self, point_id: str, part: int, text: bytes) -> int:
        """Write a part of a point's entries (vault/entries.py), given as its JSON; its
        size in bytes."""
        name = entries.part_name(point_id, part)
        sealed = self.keyed.seal_json(KIND_PART, text, name)
        self._check_lock()
        self.storage.put(name, sealed)
        return len(sealed)

    def save_wal_record(self, system_id: str, record: WalRecord | dict[str, Any]) -> None:
        """Write a WAL file record (docs/repository-format.md, *WAL file records*)."""
        name = f"wal/{system_id}/{record['name']}"
        sealed = self.keyed.seal(KIND_WAL, record, name)
        self._check_lock()
        self.storage.put(name, sealed)

    # deleting (docs/repository-format.md, *Deleting*) ----------------------------------
    def delete_manifest(self, point_id: str) -> None:
        """The manifest (the commit point of the deletion), then its parts."""
        self.storage.delete(f"manifests/{point_id}")
        for name in entries.part_names(self, point_id):
            self.storage.delete(name)

    def delete_wal_record(self, system_id: str, name: str) -> None:
        self.storage.delete(f"wal/{system_id}/{name}")

    # reading -----------------------------------------------------------------------------
    def load_wal_record(self, system_id: str, name: str) -> WalRecord | None:
        """The record of an archived WAL file, or None when it was never archived;
        ``vault.object_corrupt`` when it is not one (records.WalRecord)."""
        path = f"wal/{system_id}/{name}"
        try:
            data = self.storage.get(path)
        except FileNotFoundError:
            return None
        try:
            doc = self.keyed.unseal(KIND_WAL, data, path)
        except SealError as exc:
            raise DbsafeError("vault.object_corrupt", path=path, reason=exc) from None
        return WalRecord.parse(doc, path)

    def wal_names(self, system_id: str) -> list[str]:
        return sorted(name.rsplit("/", 1)[1] for name in self.storage.list(f"wal/{system_id}"))

    def point_ids(self) -> list[str]:
        return sorted(name.rsplit("/", 1)[1] for name in self.storage.list("manifests"))

    def load_manifest(self, point_id: str) -> Manifest:
        return self.load_manifest_sized(point_id)[0]

    def load_manifest_sized(self, point_id: str) -> tuple[Manifest, int]:
        """The manifest and the size of its sealed object in bytes; ``vault.object_corrupt``
        when it is not one (records.Manifest: its shape; the rules of its entries are
        checked where a point is acted on, services/lifecycle/manifest_checks.py)."""
        name = f"manifests/{point_id}"
        try:
            data = self.storage.get(name)
        except FileNotFoundError:
            raise KeyError(point_id) from None
        try:
            doc = self.keyed.unseal(KIND_MANIFEST, data, name)
        except SealError as exc:
            raise DbsafeError("vault.object_corrupt", path=name, reason=exc) from None
        return Manifest.parse(doc, name), len(data)

    def files_of(self, manifest: dict[str, Any]) -> Iterator[FileEntry]:
        """A point's file entries one at a time, inline or from its parts (each checked as
        it is read: vault/entries.py)."""
        return entries.read(self, manifest)

    def load_manifest_whole(self, point_id: str) -> Manifest:
        """The manifest with its file entries in ``files`` (read from its parts, all held):
        for readers that need them all at once."""
        return entries.whole(self, self.load_manifest(point_id))

    def _decompressor(self) -> zstandard.ZstdDecompressor:
        d = getattr(self._local, "dctx", None)
        if d is None:
            d = self._local.dctx = zstandard.ZstdDecompressor()
        return d

    def read_block(self, block_id: bytes) -> bytes:
        """The block's bytes, after checking them against the id; raises BlockError.

        A block missing from this process's index (stored by another process since it was
        loaded, or its pack swept while a copy lives elsewhere) is looked up once more
        after a refresh.
        """
        return self.decode_block(block_id, *self.fetch_block(block_id))

    def fetch_block(self, block_id: bytes) -> tuple[BlobLocation, bytes]:
        """Where the block is stored and its bytes as stored (compressed, encrypted): what
        a reader may keep to decode again later (``decode_block``) without fetching again."""
        try:
            return self._fetch_block(block_id)
        except BlockError as exc:
            if exc.kind != "missing":
                raise
        self.refresh_index()
        return self._fetch_block(block_id)

    def _fetch_block(self, block_id: bytes) -> tuple[BlobLocation, bytes]:
        loc = self.index.get(block_id)
        if loc is None:
            raise BlockError("missing", block_id, "not in any index file")
        try:
            blob = self.storage.get_range(pack_name(loc.pack_id), loc.offset, loc.length)
        except FileNotFoundError:
            raise BlockError("missing", block_id, f"pack {loc.pack_id} is missing") from None
        if len(blob) != loc.length:
            raise BlockError("corrupt", block_id, f"pack {loc.pack_id} is truncated")
        return loc, blob

    def decode_block(self, block_id: bytes, loc: BlobLocation, blob: bytes) -> bytes:
        """A fetched block's bytes: decrypted, decompressed and checked against its id."""
        if self.encrypted:  # index files of an encrypted vault all name their data key
            if loc.key_id is None:
                raise BlockError("corrupt", block_id, f"pack {loc.pack_id} names no data key")
            try:
                blob = self.keyed.decrypt_blob(loc.key_id, block_id, blob)
            except crypto.CryptoError:
                raise BlockError("corrupt", block_id, "ciphertext fails authentication") from None
        if loc.codec == CODEC_ZSTD:
            try:
                data = decompress_bounded(blob, loc.raw_length, self._decompressor())
            except ValueError as exc:
                raise BlockError("corrupt", block_id, str(exc)) from None
        else:
            data = blob
        if len(data) != loc.raw_length or self.keyed.digest(data) != block_id:
            raise BlockError("corrupt", block_id, "hash mismatch")
        return data
