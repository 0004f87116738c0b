"""The vault's documents as typed records: manifests and their parts, WAL file records,
index files (docs/repository-format.md, *Manifests*, *WAL file records*, *Index files*).

Writers build a record with ``new(**fields)`` (a field left out is absent from the
document); readers get one from ``vault.Repository`` (``load_manifest``,
``load_wal_record``, ``load_index_file``), which checks its shape with ``parse`` before
anyone uses it: required keys present, of their types and bounds, else
``vault.object_corrupt`` (the object cannot be read as what its name says, the code a
reader gives for a sealed object that fails its seal). What a restore would *act on* (the
paths, modes, sizes and blocks of every entry, PostgreSQL's layout) is checked later by
the security rules for hostile manifests: vault/manifest_rules.py and
engines/postgres/layout_rules.py, refusing with ``vault.manifest_invalid``.

Why records over the document rather than dataclasses or pydantic models: a record *is*
its JSON document (a ``dict`` subclass), with typed attributes beside the keys.

- The format must not change by a byte. The writers of today emit their keys in orders
  of their own (a log point's manifest lists ``segments``, ``files``, ``wal``, ``dirs``,
  ``tablespaces`` in another order than a full's) and leave keys out (``base`` but in a
  differential, ``node`` but of a replica set), and the sealed payload is
  ``json.dumps`` of the document as built. A record keeps the document as given, so
  ``to_json`` is the payload a writer sealed before: no declared field order, no
  ``exclude_unset`` bookkeeping, no null written for an absent key.
- Old and future documents stay readable: keys a version added later are absent in old
  manifests (``retention``, ``databases.template``, ``instance.node``), keys this version
  does not know survive a read (a pydantic model would drop or refuse them, a dataclass
  needs a catch-all).
- A manifest lists up to millions of file entries; models would copy each into an object
  at every read (garbage collection reads every manifest). Here ``parse`` walks the
  top-level keys and leaves the entries to the rules above, checked only where a point is
  acted on, as before.
- Readers in the services keep their dict access (``manifest["wal"]``) and may use the
  attributes (``manifest.instance.system_identifier``) where they touch code anyway;
  tests that forge documents keep writing plain dicts. A point's file entries come from
  ``Repository.files_of`` (inline ``files``, or parts: vault/entries.py).
"""

from __future__ import annotations

import json
from typing import Any, Self, cast

from dbsafe.core.errors import DbsafeError
from dbsafe.vault import crypto
from dbsafe.vault.format import CODEC_RAW, CODEC_ZSTD

FORMAT = 1  # the documents' own "format" (docs/repository-format.md, *Changes*)
POINT_TYPES = ("full", "copy-only", "diff", "log")
BLOB_OVERHEAD = crypto.NONCE + crypto.TAG  # an encrypted blob's bytes beyond its plaintext


def _is_int(value: object) -> bool:
    return type(value) is int


def _is_num(value: object) -> bool:
    return type(value) in (int, float)


# a field's check: (what it must be, test); the test sees the value
STR = ("a string", lambda v: isinstance(v, str))
INT = ("an integer", _is_int)
COUNT = ("a whole number", lambda v: _is_int(v) and v >= 0)
NUM = ("a number", _is_num)
BOOL = ("true or false", lambda v: type(v) is bool)
LIST = ("a list", lambda v: isinstance(v, list))
OBJ = ("an object", lambda v: isinstance(v, dict))
OBJ_OR_NULL = ("an object or null", lambda v: v is None or isinstance(v, dict))
STR_OR_NULL = ("a string or null", lambda v: v is None or isinstance(v, str))


class Record(dict[str, Any]):
    """A document of the vault with typed attributes. ``REQUIRED`` keys must be present
    and pass their check; ``OPTIONAL`` ones pass it when present."""

    WHAT = "document"
    REQUIRED: dict[str, tuple[str, Any]] = {}
    OPTIONAL: dict[str, tuple[str, Any]] = {}

    @classmethod
    def problem(cls, doc: object) -> str | None:
        """Why ``doc`` does not have this record's shape, or None."""
        if not isinstance(doc, dict):
            return f"the {cls.WHAT} is not an object"
        for key, (what, test) in cls.REQUIRED.items():
            if key not in doc:
                return f"the {cls.WHAT} has no {key!r}"
            if not test(doc[key]):
                return f"the {cls.WHAT}'s {key!r} is not {what}"
        for key, (what, test) in cls.OPTIONAL.items():
            if key in doc and not test(doc[key]):
                return f"the {cls.WHAT}'s {key!r} is not {what}"
        return cls._more(doc)

    @classmethod
    def _more(cls, doc: dict[str, Any]) -> str | None:
        """Checks beyond the keys' own (parts, bounds)."""
        return None

    @classmethod
    def parse(cls, doc: object, path: str) -> Self:
        """The record of the document read at ``path``; ``vault.object_corrupt`` when it
        does not have the record's shape."""
        problem = cls.problem(doc)
        if problem is not None:
            raise DbsafeError("vault.object_corrupt", path=path, reason=problem)
        return doc if type(doc) is cls else cls(cast(dict[str, Any], doc))

    @classmethod
    def new(cls, **fields: Any) -> Self:
        """A record a writer builds; the keys in the order given. A shape broken here is
        the writer's bug (ValueError), never written."""
        record = cls(fields)
        problem = cls.problem(record)
        if problem is not None:
            raise ValueError(problem)
        return record

    def as_dict(self) -> dict[str, Any]:
        """The document as a plain dict (the same keys, in the same order)."""
        return dict(self)

    def to_json(self) -> bytes:
        """The document as it is sealed (vault/format.py, ``Keyed.seal``): compact JSON,
        keys in the order the writer gave them."""
        return json.dumps(self, separators=(",", ":")).encode()


# manifests --------------------------------------------------------------------------------
class Instance(Record):
    """``instance``: the server the point was taken of. ``owner`` and ``node`` are absent
    in log points (and ``node`` in points older than replica sets)."""

    WHAT = "instance"
    REQUIRED = {"server": STR, "system_identifier": STR}
    OPTIONAL = {"pg_version": ("an integer or null", lambda v: v is None or _is_int(v)),
                "pgdata": STR_OR_NULL, "owner": STR_OR_NULL, "node": STR_OR_NULL,
                "data_checksums": BOOL}

    server = property(lambda self: self["server"])
    system_identifier = property(lambda self: self["system_identifier"])
    pg_version = property(lambda self: self.get("pg_version"))
    pgdata = property(lambda self: self.get("pgdata"))
    owner = property(lambda self: self.get("owner"))
    node = property(lambda self: self.get("node"))


class FileEntry(Record):
    """A file of a manifest (``files``, ``wal``): whole, a ``delta`` on the base's entry
    of the same path (*Differentials*), or ``layers`` over its read blocks (*Synthetic
    fulls*). Its paths, modes, sizes and block counts are the
    rules' business (vault/manifest_rules.py): not checked here."""

    WHAT = "file entry"

    path = property(lambda self: self["path"])
    size = property(lambda self: self["size"])
    mode = property(lambda self: self.get("mode", 0))
    mtime = property(lambda self: self.get("mtime", 0))
    blocks = property(lambda self: self["blocks"])
    checksum = property(lambda self: self.get("checksum"))
    delta = property(lambda self: self.get("delta"))
    layers = property(lambda self: self.get("layers"))


def layered_blocks(entry: dict[str, Any]
                   ) -> tuple[list[str], list[tuple[dict[str, Any], list[str]]]]:
    """An entry's ``blocks`` as the blocks last read whole and each of its ``layers`` with
    its own blocks (*Synthetic fulls*); a whole entry has only read blocks."""
    blocks, layers = entry["blocks"], entry.get("layers") or []
    at = len(blocks) - sum(len(layer["block_pages"]) for layer in layers)
    read, out = blocks[:at], []
    for layer in layers:
        n = len(layer["block_pages"])
        out.append((layer, blocks[at:at + n]))
        at += n
    return read, out


class Tablespace(Record):
    WHAT = "tablespace"
    REQUIRED = {"oid": STR, "location": STR}

    oid = property(lambda self: self["oid"])
    location = property(lambda self: self["location"])


class Database(Record):
    """``databases``: ``template`` is absent in older manifests (``template1`` is one)."""

    WHAT = "database"
    REQUIRED = {"name": STR, "included": BOOL}
    OPTIONAL = {"template": BOOL}

    name = property(lambda self: self["name"])
    oid = property(lambda self: self.get("oid"))
    included = property(lambda self: self["included"])
    template = property(lambda self: self.get("template", self["name"] == "template1"))


STATS = ("stats {bytes_read, bytes_stored, corrupt_pages}", lambda v: isinstance(v, dict) and all(
    _is_int(v.get(k)) for k in ("bytes_read", "bytes_stored", "corrupt_pages")))


class Manifest(Record):
    """A recovery point (*Manifests*). ``parse`` checks what listing a point, building the
    catalog's row and counting the blocks in use rely on; the entries' rules are checked
    where a point is acted on (services/lifecycle/manifest_checks.py)."""

    WHAT = "manifest"
    REQUIRED = {"point_id": STR, "wal": LIST}
    OPTIONAL = {
        "files": LIST,
        "entries": ("{parts, files}", lambda v: isinstance(v, dict) and all(
            _is_int(v.get(k)) and v[k] >= 0 for k in ("parts", "files"))),
        "format": ("1", lambda v: v == FORMAT and _is_int(v)),
        "type": (" or ".join(POINT_TYPES), lambda v: v in POINT_TYPES),
        "copy_only": BOOL,
        "instance": OBJ,
        "start_time": STR, "end_time": STR, "start_lsn": STR, "stop_lsn": STR,
        "timeline": INT,
        "stats": STATS,
        "base_start_lsn": STR, "dropped": LIST, "backup_label": STR_OR_NULL,
        "tablespace_map": STR_OR_NULL, "tablespaces": LIST, "compression": OBJ,
        "dirs": LIST, "databases": LIST, "skipped": LIST, "segments": LIST,
        "corrupt_pages": LIST, "retention": OBJ_OR_NULL, "delta_source": OBJ, "build": OBJ,
    }

    @classmethod
    def _more(cls, doc: dict[str, Any]) -> str | None:
        problem = Instance.problem(doc["instance"]) if "instance" in doc else None
        if problem is not None:
            return problem
        if ("files" in doc) == ("entries" in doc):
            return "the manifest has " + ("both 'files' and 'entries'" if "files" in doc
                                          else "neither 'files' nor 'entries'")
        for key in ("files", "wal"):  # the blocks garbage collection counts as used
            for entry in doc.get(key, ()):
                if not (isinstance(entry, dict) and isinstance(entry.get("blocks"), list)):
                    return f"the manifest's {key!r} holds an entry without a list of blocks"
        # tablespaces are PostgreSQL's layout: engines/postgres/layout_rules.py checks them
        for item in doc.get("databases", ()):
            problem = Database.problem(item)
            if problem is not None:
                return f"databases: {problem}"
        return None

    point_id = property(lambda self: self["point_id"])
    type = property(lambda self: self.get("type"))
    copy_only = property(lambda self: self.get("copy_only", False))
    base = property(lambda self: self.get("base"))
    instance = property(lambda self: Instance(self["instance"]))
    start_time = property(lambda self: self["start_time"])
    end_time = property(lambda self: self["end_time"])
    start_lsn = property(lambda self: self["start_lsn"])
    stop_lsn = property(lambda self: self["stop_lsn"])
    timeline = property(lambda self: self["timeline"])
    block_size = property(lambda self: self.get("block_size"))
    wal = property(lambda self: [FileEntry(e) for e in self["wal"]])
    tablespaces = property(lambda self: [Tablespace(t) for t in self.get("tablespaces", [])])
    databases = property(lambda self: [Database(d) for d in self["databases"]]
                         if "databases" in self else None)
    retention = property(lambda self: self.get("retention"))
    stats = property(lambda self: self["stats"])
    build = property(lambda self: self.get("build") or {"kind": "read"})



# WAL file records -------------------------------------------------------------------------
class Segment(Record):
    """``segment`` of a WAL record: what a point-in-time restore plans with."""

    WHAT = "segment"
    REQUIRED = {"timeline": INT, "segno": COUNT, "segment_size": COUNT}
    OPTIONAL = {"end_lsn": STR, "first_xact_time": STR_OR_NULL,
                "last_xact_time": STR_OR_NULL, "xacts": COUNT, "switched": BOOL,
                "restore_points": LIST}

    timeline = property(lambda self: self["timeline"])
    segno = property(lambda self: self["segno"])
    segment_size = property(lambda self: self["segment_size"])
    end_lsn = property(lambda self: self.get("end_lsn"))


class WalRecord(Record):
    """An archived WAL file (*WAL file records*)."""

    WHAT = "WAL record"
    REQUIRED = {
        "name": STR,
        "blocks": ("a list of block ids",
                   lambda v: isinstance(v, list) and all(isinstance(b, str) for b in v)),
    }
    OPTIONAL = {"format": ("1", lambda v: v == FORMAT and _is_int(v)), "size": COUNT,
                "checksum": STR, "mtime": NUM, "archived": STR,
                "server": STR_OR_NULL, "segment": OBJ_OR_NULL}

    @classmethod
    def _more(cls, doc: dict[str, Any]) -> str | None:
        return None if doc.get("segment") is None else Segment.problem(doc["segment"])

    name = property(lambda self: self["name"])
    size = property(lambda self: self.get("size"))
    blocks = property(lambda self: self["blocks"])
    checksum = property(lambda self: self.get("checksum"))
    mtime = property(lambda self: self.get("mtime"))
    archived = property(lambda self: self.get("archived"))
    server = property(lambda self: self.get("server"))
    segment = property(lambda self: None if self.get("segment") is None
                       else Segment(self["segment"]))


# index files ------------------------------------------------------------------------------
class BlobEntry(tuple[Any, ...]):
    """One blob of an index file or pack header, stored as the list ``[id, offset,
    length, raw_length, codec]``."""

    __slots__ = ()
    id = property(lambda self: self[0])
    offset = property(lambda self: self[1])
    length = property(lambda self: self[2])
    raw_length = property(lambda self: self[3])
    codec = property(lambda self: self[4])


class IndexFile(Record):
    """``index/<pack id>``: the blobs of one pack, and in an encrypted vault its data key."""

    WHAT = "index file"
    REQUIRED = {"pack": STR}  # "blobs" and "key": blobs_problem, with the vault's bounds

    pack = property(lambda self: self["pack"])
    key = property(lambda self: self.get("key"))
    blobs = property(lambda self: [BlobEntry(b) for b in self["blobs"]])

    @classmethod
    def parse_in(cls, doc: object, path: str, block_size: int, encrypted: bool) -> IndexFile:
        """``parse`` with the vault's bounds: a reader allocates ``length`` bytes to read
        a blob and ``raw_length`` to decompress it (a plain loop: ~0.2 µs a blob, where an
        index of a million blobs loads at every writer's start)."""
        problem = cls.problem(doc) or blobs_problem(cast(dict[str, Any], doc), block_size,
                                                    encrypted)
        if problem is not None:
            raise DbsafeError("vault.object_corrupt", path=path, reason=problem)
        return cast(Self, doc) if type(doc) is cls else cls(cast(dict[str, Any], doc))


def blobs_problem(doc: dict[str, Any], block_size: int, encrypted: bool) -> str | None:
    """Why an index file's blob list cannot be trusted, or None."""
    if encrypted != isinstance(doc.get("key"), str):
        return "its data key is missing" if encrypted else "a data key in a plain vault"
    blobs = doc.get("blobs")
    if not isinstance(blobs, list):
        return "no blob list"
    extra = BLOB_OVERHEAD if encrypted else 0
    for entry in blobs:
        if type(entry) is not list or len(entry) != 5:
            return f"blob entry {str(entry)[:100]} is not [id, offset, length, raw, codec]"
        id_hex, offset, length, raw, codec = entry
        if not (type(offset) is int and type(length) is int and type(raw) is int
                and type(id_hex) is str and len(id_hex) == 64
                and offset >= 0 and 0 <= raw <= block_size and 0 < length <= raw + extra
                and (codec == CODEC_ZSTD or (codec == CODEC_RAW and length == raw + extra))):
            return f"blob entry {str(entry)[:100]} is out of bounds (block size {block_size})"
    return None
