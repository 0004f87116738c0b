"""Log backups, the continuous part: one WAL file from PostgreSQL's archiver into the vault.

A file is archived when its blocks are in sealed, indexed packs and its record is durable
(docs/repository-format.md, *WAL file records*); only then may the archive command report
success. Archiving the same file twice is a success when the content is equal and an error
when it differs, as pgBackRest does: two writers on one chain must never be silent.

A file is stored only when the vault has room for it (it needs at most its own size): a
vault within one WAL file of full refuses with ``vault.full`` before writing, and so does
one the file system fills meanwhile; either raises the ``vault_full`` alert, and PostgreSQL
keeps the file and asks again.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

from dbsafe.core import defaults
from dbsafe.core.errors import DbsafeError
from dbsafe.core.regular_files import NotRegularFile, read_head, read_regular
from dbsafe.engines.postgres import wal
from dbsafe.services.activity import alerts
from dbsafe.services.handle import space
from dbsafe.services.handle.vault_handle import Vault
from dbsafe.vault.records import Segment, WalRecord

MAX_SEGMENT = 1 << 30      # PostgreSQL's largest wal_segment_size (initdb --wal-segsize)
SMALL_WAL_FILE = 1 << 20   # timeline and backup history files: a few lines of text


def archive_wal_file(vault: Vault, server: dict, path: Path, name: str,
                     level: int = defaults.COMPRESS_LEVEL) -> dict:
    """Store one WAL file of ``server`` (a segment, history, backup or partial file), its
    new blocks compressed at zstd ``level`` (0: raw; the agent passes the server's policy's,
    services/inventory/policies.compression_for)."""
    data, st = read_wal_file(server, path, name)
    return archive_wal_bytes(vault, server, name, data, st.st_mtime, level)


def archive_wal_bytes(vault: Vault, server: dict, name: str, data: bytes, mtime: float,
                      level: int = defaults.COMPRESS_LEVEL) -> dict:
    """Store the WAL file ``name`` of ``server`` whose content is ``data`` (read from
    pg_wal, or from the agent's spool, agent/spool.py)."""
    # The writer lock spans the blocks and the record listing them (vault/gc.py); the file
    # is read before it is taken: a file that cannot be read never holds up other writers.
    try:
        with vault.repo.writing("archive"):
            return _archive(vault, server, name, data, mtime, level)
    except DbsafeError as exc:
        if exc.code == "vault.full":
            alerts.vault_full(vault.catalog, exc.message,
                              source=f"WAL archiving of {server['name']}")
        raise


def read_wal_file(server: dict, path: Path, name: str) -> tuple[bytes, os.stat_result]:
    """The bytes of a file of ``server``'s pg_wal, read as root from a folder its owner
    writes: only a name PostgreSQL archives, only a regular file reached without a link at
    its last component (core/regular_files.py), at most a segment's size (history and
    backup history files: ``SMALL_WAL_FILE``). Refused: ``archive.file_refused``."""
    kind, cap = _wal_file(server, path, name)
    try:
        return read_regular(str(path), cap)
    except NotRegularFile as exc:
        raise DbsafeError("archive.file_refused", name=name, server=server["name"],
                          reason=f"{exc.reason} (a {kind} file)") from None


def read_wal_head(server: dict, path: Path, name: str, size: int) -> bytes:
    """The first ``size`` bytes of a pg_wal file, read as ``read_wal_file`` reads it."""
    kind, cap = _wal_file(server, path, name)
    try:
        return read_head(str(path), min(size, cap))
    except NotRegularFile as exc:
        raise DbsafeError("archive.file_refused", name=name, server=server["name"],
                          reason=f"{exc.reason} (a {kind} file)") from None


def _wal_file(server: dict, path: Path, name: str) -> tuple[str, int]:
    """The kind of pg_wal file ``name`` is and how many bytes it may hold; refused when
    it is not the name of one PostgreSQL archives."""
    kind = wal.wal_file_kind(name)
    if kind is None or os.path.basename(path) != name:
        raise DbsafeError("archive.file_refused", name=name, server=server["name"],
                          reason="not the name of a WAL file PostgreSQL archives")
    cap = (server.get("wal_segment_size") or MAX_SEGMENT) if kind in ("segment", "partial") \
        else SMALL_WAL_FILE
    return kind, cap


def _blocks(vault: Vault, data: bytes) -> tuple[list, list[bytes], str]:
    repo = vault.repo
    bs = repo.block_size
    chunks = [memoryview(data)[i:i + bs] for i in range(0, len(data), bs)]
    ids = [repo.keyed.digest(c) for c in chunks]
    return chunks, ids, repo.file_checksum(ids)


def content_checksum(vault: Vault, server: dict, path: Path, name: str) -> str:
    """The checksum a WAL file's record would carry (compared with the vault's copy)."""
    return _blocks(vault, read_wal_file(server, path, name)[0])[2]


def already_held(vault: Vault, server: dict, name: str, checksum: str) -> dict | None:
    """The vault's record of ``name`` when it holds the same content (a retry, or another
    node of the lineage archived it first); other content is a conflict."""
    sysid = server["system_identifier"]
    existing = vault.repo.load_wal_record(sysid, name)
    if existing is None:
        return None
    if existing["checksum"] != checksum:
        raise DbsafeError("archive.conflict", name=name, server=server["name"])
    vault.catalog.add_wal_file(wal_row(sysid, existing))
    return existing


def _archive(vault: Vault, server: dict, name: str, data: bytes, mtime: float,
             level: int) -> dict:
    repo = vault.repo
    sysid = server["system_identifier"]
    chunks, ids, checksum = _blocks(vault, data)
    existing = already_held(vault, server, name, checksum)
    if existing is not None:
        return existing
    what = f"WAL file {name} of {server['name']}"
    space.require(vault, len(data), what)
    sink = repo.block_sink(level)
    try:
        for chunk in chunks:
            sink.store(chunk)
        sink.close()
    except BaseException as exc:
        sink.abort()
        if isinstance(exc, DbsafeError) and exc.code == "vault.full":
            raise space.said_by(exc, what, len(data)) from exc
        raise
    archived = datetime.now(UTC).isoformat(timespec="milliseconds")
    segment = None
    segment_size = server.get("wal_segment_size") or len(data)
    parsed = wal.parse_segment_name(name, segment_size)
    if parsed is not None:
        timeline, segno = parsed
        facts = wal.scan(data, segno, segment_size)
        segment = Segment.new(
            timeline=timeline, segno=segno, segment_size=segment_size,
            end_lsn=wal.format_lsn(facts.end_lsn),
            first_xact_time=_iso(facts.first_xact_time),
            last_xact_time=_iso(facts.last_xact_time), xacts=facts.xacts,
            switched=facts.switched, restore_points=facts.restore_points)
    record = WalRecord.new(format=1, name=name, size=len(data), blocks=[i.hex() for i in ids],
                           checksum=checksum, mtime=mtime, archived=archived,
                           server=server["name"], segment=segment)
    repo.save_wal_record(sysid, record)
    vault.catalog.add_wal_file(wal_row(sysid, record))
    return record


def _iso(t: datetime | None) -> str | None:
    return t.isoformat(timespec="microseconds") if t else None


def wal_row(system_id: str, record: dict) -> dict:
    """The catalog row of a WAL file record."""
    seg = record.get("segment") or {}
    return {"system_identifier": system_id, "name": record["name"],
            "timeline": seg.get("timeline"), "segno": seg.get("segno"),
            "segment_size": seg.get("segment_size"), "size": record["size"],
            "end_lsn": seg.get("end_lsn"), "first_xact_time": seg.get("first_xact_time"),
            "last_xact_time": seg.get("last_xact_time"), "xacts": seg.get("xacts"),
            "restore_points": json.dumps(seg.get("restore_points") or []),
            "mtime": record["mtime"], "archived": record["archived"],
            "server": record.get("server")}


def reconcile_wal(vault: Vault, system_id: str) -> int:
    """Add to the catalog the WAL records it lacks (written, then the process died), and
    drop the rows whose record is gone (pruned, then the process died). Not by an agent
    (``keeps_catalog``): it writes only its own clusters' rows, and the control plane
    repairs the catalog for all."""
    if not vault.keeps_catalog:
        return 0
    known = vault.catalog.wal_file_names(system_id)
    stored = vault.repo.wal_names(system_id)
    vault.catalog.delete_wal_files(system_id, sorted(known - set(stored)))
    added = 0
    for name in stored:
        if name not in known:
            record = vault.repo.load_wal_record(system_id, name)
            if record is not None:
                vault.catalog.add_wal_file(wal_row(system_id, record))
                added += 1
    return added
