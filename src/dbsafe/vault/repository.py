"""One vault repository: open or create it, write blocks and manifests, read them back verified."""

from __future__ import annotations

import contextlib
import hmac
import json
import secrets
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import zstandard

from dbsafe.core.errors import DbsafeError
from dbsafe.storage.base import Storage
from dbsafe.storage.local import LocalStorage
from dbsafe.vault import crypto
from dbsafe.vault.blocks import BlockSink
from dbsafe.vault.format import (
    CODEC_ZSTD,
    FORMAT,
    KIND_INDEX,
    KIND_MANIFEST,
    KIND_WAL,
    Keyed,
    SealError,
    new_config,
)
from dbsafe.vault.gc import held_packs
from dbsafe.vault.index import BlobIndex
from dbsafe.vault.locks import WriterLock
from dbsafe.vault.packs import pack_name

KEYS = "keys"


def _storage(where: Storage | Path | str) -> Storage:
    return LocalStorage(Path(where)) if isinstance(where, (str, Path)) else where


class BlockError(Exception):
    """A block could not be read back intact. ``kind`` is 'missing' or 'corrupt'."""

    def __init__(self, kind: str, block_id: bytes, reason: str) -> None:
        super().__init__(f"{kind} block {block_id.hex()}: {reason}")
        self.kind = kind
        self.block_id = block_id
        self.reason = reason


class Repository:
    """``master``: for an encrypted vault, a function returning the master key, called the
    first time the vault's keys are needed (listing points needs none; reading or writing
    data does), so commands that touch no data never ask for a passphrase."""

    def __init__(self, storage: Storage, config: dict,
                 master: Callable[[], bytes] | None = None) -> None:
        self.storage = storage
        self.config = config
        self.block_size: int = config["block_size"]
        self._master = master
        self._keyed: Keyed | None = None
        self._keys_lock = threading.Lock()
        self._index: BlobIndex | None = None
        self._index_lock = threading.Lock()
        self._local = threading.local()

    @property
    def location(self) -> str:
        return self.storage.describe()["location"]

    @property
    def encrypted(self) -> bool:
        return bool(self.config.get("encryption"))

    # lifecycle -----------------------------------------------------------------------
    @classmethod
    def init(cls, where: Storage | Path | str, region: str | None = None,
             master: bytes | None = None) -> Repository:
        """A new vault; encrypted when given a master key (its first data key is stored)."""
        storage = _storage(where)
        if storage.exists("config"):
            raise DbsafeError("vault.exists", path=storage.describe()["location"])
        config = new_config(region, encryption={"cipher": crypto.CIPHER} if master else None)
        if master is not None:
            config["encryption"]["key_check"] = crypto.key_check(master, config["vault_id"])
            key_id = crypto.new_key_id()
            storage.put(f"{KEYS}/{key_id}",
                        crypto.wrap_data_key(master, key_id, secrets.token_bytes(32)))
        storage.put("config", json.dumps(config, indent=2).encode())
        return cls(storage, config, (lambda: master) if master is not None else None)

    @classmethod
    def open(cls, where: Storage | Path | str,
             master: Callable[[], bytes] | None = None) -> Repository:
        storage = _storage(where)
        try:
            config = json.loads(storage.get("config"))
        except FileNotFoundError:
            raise DbsafeError("vault.not_initialised",
                              path=storage.describe()["location"]) from None
        if config.get("format") != FORMAT:
            raise DbsafeError("vault.format_unsupported", path=storage.describe()["location"],
                              found=config.get("format"), expected=FORMAT)
        return cls(storage, config, master)

    def set_region(self, region: str) -> None:
        """Give a vault created without a region its region: once (docs, *config*)."""
        if self.config.get("region") is not None:
            raise DbsafeError("vault.region_fixed", region=self.config["region"])
        config = {**self.config, "region": region}
        self.storage.put("config", json.dumps(config, indent=2).encode())
        self.config = config

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
            return Keyed(bytes.fromhex(self.config["id_key"]))
        if self._master is None:
            raise DbsafeError("key.missing", vault_id=self.config["vault_id"])
        master = self._master()
        self.check_master(master)
        ring = crypto.KeyRing(master, self._load_data_key, self._newest_data_key())
        return Keyed(ring.id_key, ring)

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
        """Refuse a master key of another vault (``key.wrong``)."""
        expected = self.config["encryption"]["key_check"]
        if not hmac.compare_digest(crypto.key_check(master, self.config["vault_id"]), expected):
            raise DbsafeError("key.wrong", vault_id=self.config["vault_id"])

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

    # index -----------------------------------------------------------------------------
    @property
    def index(self) -> BlobIndex:
        if self._index is None:
            self.refresh_index()
        return self._index  # type: ignore[return-value]

    def refresh_index(self) -> None:
        """Bring the in-memory index up to date with ``index/`` and the tombstones.

        New index files are added; tombstoned packs are excluded from deduplication; when a
        known pack's index file is gone (garbage collection swept it) the index is reloaded
        whole, since another pack may hold copies of its blocks, and the descriptors this
        process kept open on swept packs are retired (else their space is not freed).
        """
        with self._index_lock:
            # Tombstones before index files: a sweep deletes a pack's index file before its
            # tombstone, so a pack is either still listed as held or no longer listed at all.
            held = frozenset(held_packs(self.storage))
            names = set(self.storage.names("index"))
            index = self._index
            known = set() if index is None else index.pack_ids()
            if index is None or known - names:
                fresh = BlobIndex()
                # Packs no tombstone lists first: a block in both is then found in the live one.
                for pack_id in sorted(names - held) + sorted(names & held):
                    self._add_index_file(fresh, pack_id)
                fresh.excluded = held
                if index is None:
                    self._index = fresh
                    return
                index.replace(fresh)
            else:
                for pack_id in sorted(names - known):
                    self._add_index_file(index, pack_id)
                index.excluded = held
            self.storage.retire(pack_name(p) for p in known - names)

    def _add_index_file(self, index: BlobIndex, pack_id: str) -> None:
        name = f"index/{pack_id}"
        try:
            doc = self.keyed.unseal(KIND_INDEX, self.storage.get(name))
        except FileNotFoundError:
            return  # swept meanwhile
        except SealError as exc:
            raise DbsafeError("vault.object_corrupt", path=name, reason=exc) from None
        index.add_pack(doc["pack"], doc["blobs"], doc.get("key"))

    # writing -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def writing(self, kind: str) -> Iterator[None]:
        """Hold a writer lock while storing blocks and until the manifest or WAL record that
        lists them is written (docs/repository-format.md, *Garbage collection*): garbage
        collection waits for it before deleting a pack this writer may deduplicate against.

        The lock is visible before the index is refreshed, so the refresh sees every
        tombstone written before the lock was listed by a garbage collection.
        """
        lock = WriterLock(self.storage, kind)
        depth = getattr(self._local, "writing", 0)
        self._local.writing = depth + 1
        try:
            ring = self.keyed.ring
            if ring is not None and depth == 0:  # another client may have rotated the key
                ring.current_id = max(ring.current_id, self._newest_data_key())
            self.refresh_index()
            yield
        finally:
            self._local.writing = depth
            lock.release()

    def block_sink(self, level: int) -> BlockSink:
        """A sink for new blocks; only inside ``writing()`` (the lock that keeps garbage
        collection from deleting what the sink deduplicates against)."""
        if not getattr(self._local, "writing", 0):
            raise RuntimeError("block_sink() needs `with repo.writing(kind):` around the write")
        self.storage.cleanup()
        return BlockSink(self.storage, self.keyed, self.index, level, self.block_size)

    def file_checksum(self, block_ids: list[bytes]) -> str:
        return self.keyed.digest(b"".join(block_ids)).hex()

    def save_manifest(self, manifest: dict) -> int:
        """Write the manifest (the backup's commit point); returns its size in bytes."""
        sealed = self.keyed.seal(KIND_MANIFEST, manifest)
        self.storage.put(f"manifests/{manifest['point_id']}", sealed)
        return len(sealed)

    def save_wal_record(self, system_id: str, record: dict) -> None:
        """Write a WAL file record (docs/repository-format.md, *WAL file records*)."""
        self.storage.put(f"wal/{system_id}/{record['name']}", self.keyed.seal(KIND_WAL, record))

    # deleting (docs/repository-format.md, *Deleting*) ----------------------------------
    def delete_manifest(self, point_id: str) -> None:
        self.storage.delete(f"manifests/{point_id}")

    def delete_wal_record(self, system_id: str, name: str) -> None:
        self.storage.delete(f"wal/{system_id}/{name}")

    # reading -----------------------------------------------------------------------------
    def load_wal_record(self, system_id: str, name: str) -> dict | None:
        """The record of an archived WAL file, or None when it was never archived."""
        path = f"wal/{system_id}/{name}"
        try:
            data = self.storage.get(path)
        except FileNotFoundError:
            return None
        try:
            return self.keyed.unseal(KIND_WAL, data)  # type: ignore[return-value]
        except SealError as exc:
            raise DbsafeError("vault.object_corrupt", path=path, reason=exc) from None

    def wal_names(self, system_id: str) -> list[str]:
        return sorted(name.rsplit("/", 1)[1] for name in self.storage.list(f"wal/{system_id}"))

    def point_ids(self) -> list[str]:
        return sorted(name.rsplit("/", 1)[1] for name in self.storage.list("manifests"))

    def load_manifest(self, point_id: str) -> dict:
        return self.load_manifest_sized(point_id)[0]

    def load_manifest_sized(self, point_id: str) -> tuple[dict, int]:
        """The manifest and the size of its sealed object in bytes."""
        name = f"manifests/{point_id}"
        try:
            data = self.storage.get(name)
        except FileNotFoundError:
            raise KeyError(point_id) from None
        try:
            return self.keyed.unseal(KIND_MANIFEST, data), len(data)  # type: ignore[return-value]
        except SealError as exc:
            raise DbsafeError("vault.object_corrupt", path=name, reason=exc) from None

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
        try:
            return self._read_block(block_id)
        except BlockError as exc:
            if exc.kind != "missing":
                raise
        self.refresh_index()
        return self._read_block(block_id)

    def _read_block(self, block_id: bytes) -> bytes:
        loc = self.index.get(block_id)
        if loc is None:
            raise BlockError("missing", block_id, "not in any index file")
        try:
            blob = self.storage.get_range(pack_name(loc.pack_id), loc.offset, loc.length)
        except FileNotFoundError:
            raise BlockError("missing", block_id, f"pack {loc.pack_id} is missing") from None
        if len(blob) != loc.length:
            raise BlockError("corrupt", block_id, f"pack {loc.pack_id} is truncated")
        if loc.key_id is not None:
            try:
                blob = self.keyed.decrypt_blob(loc.key_id, block_id, blob)
            except crypto.CryptoError:
                raise BlockError("corrupt", block_id, "ciphertext fails authentication") from None
        if loc.codec == CODEC_ZSTD:
            try:
                data = self._decompressor().decompress(blob, max_output_size=loc.raw_length)
            except zstandard.ZstdError as exc:
                raise BlockError("corrupt", block_id, f"cannot decompress: {exc}") from None
        else:
            data = blob
        if len(data) != loc.raw_length or self.keyed.digest(data) != block_id:
            raise BlockError("corrupt", block_id, "hash mismatch")
        return data
