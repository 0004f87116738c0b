"""One vault repository: open or create it, write blocks and manifests, read them back verified."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import zstandard

from dbsafe.core.errors import DbsafeError
from dbsafe.storage.local import LocalStorage
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
from dbsafe.vault.index import BlobIndex
from dbsafe.vault.packs import pack_name


class BlockError(Exception):
    """A block could not be read back intact. ``kind`` is 'missing' or 'corrupt'."""

    def __init__(self, kind: str, block_id: bytes, reason: str) -> None:
        super().__init__(f"{kind} block {block_id.hex()}: {reason}")
        self.kind = kind
        self.block_id = block_id
        self.reason = reason


class Repository:
    def __init__(self, root: Path, config: dict) -> None:
        self.root = root
        self.config = config
        self.storage = LocalStorage(root)
        self.keyed = Keyed(config["id_key"])
        self.block_size: int = config["block_size"]
        self._index: BlobIndex | None = None
        self._index_lock = threading.Lock()
        self._local = threading.local()

    # lifecycle -----------------------------------------------------------------------
    @classmethod
    def init(cls, root: Path, region: str | None = None) -> Repository:
        root = Path(root)
        if (root / "config").exists():
            raise DbsafeError("vault.exists", path=root)
        root.mkdir(parents=True, exist_ok=True)
        config = new_config(region)
        storage = LocalStorage(root)
        for folder in ("data", "index", "manifests", "tmp"):
            (root / folder).mkdir(exist_ok=True)
        storage.put("config", json.dumps(config, indent=2).encode())
        return cls(root, config)

    @classmethod
    def open(cls, root: Path) -> Repository:
        root = Path(root)
        try:
            config = json.loads((root / "config").read_bytes())
        except FileNotFoundError:
            raise DbsafeError("vault.not_initialised", path=root) from None
        if config.get("format") != FORMAT:
            raise DbsafeError("vault.format_unsupported", path=root,
                              found=config.get("format"), expected=FORMAT)
        return cls(root, config)

    # index -----------------------------------------------------------------------------
    @property
    def index(self) -> BlobIndex:
        with self._index_lock:
            if self._index is None:
                self._index = self._load_index()
            return self._index

    def _load_index(self) -> BlobIndex:
        index = BlobIndex()
        for name in self.storage.list("index"):
            try:
                doc = self.keyed.unseal(KIND_INDEX, self.storage.get(name))
            except SealError as exc:
                raise DbsafeError("vault.object_corrupt", path=name, reason=exc) from None
            index.add_pack(doc["pack"], doc["blobs"])
        return index

    # writing -----------------------------------------------------------------------------
    def block_sink(self, level: int) -> BlockSink:
        self.storage.remove_stale_tmp()
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
        """The block's bytes, after checking them against the id; raises BlockError."""
        loc = self.index.get(block_id)
        if loc is None:
            raise BlockError("missing", block_id, "not in any index file")
        try:
            blob = self.storage.get_range(pack_name(loc.pack_id), loc.offset, loc.length)
        except FileNotFoundError:
            raise BlockError("missing", block_id, f"pack {loc.pack_id} is missing") from None
        if len(blob) != loc.length:
            raise BlockError("corrupt", block_id, f"pack {loc.pack_id} is truncated")
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
