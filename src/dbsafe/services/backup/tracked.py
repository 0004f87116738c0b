"""Where a WAL-tracked differential's change map comes from (docs/change-map.md).

The map of ``[base start, this backup's start)`` comes from the server's own WAL summaries
when it keeps them for the whole range (PostgreSQL 17 on), else from the WAL of that range:
each segment from the server's pg_wal while it is there (the backup runs on the server's
host; no decompression), else from the vault's log chain (a segment PostgreSQL recycled
since it was archived). When the map cannot be built the reason is returned, for the
job's warnings (``backup.diff_untracked``), and the differential scans page LSNs as it
always did: a doubt never becomes a guess.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from dbsafe.core.errors import DbsafeError
from dbsafe.engines.postgres.changemap import ChangeMap, MapBuilder, Unusable, from_summaries
from dbsafe.engines.postgres.wal import (
    WAL_PAGE,
    SegmentChanges,
    changes,
    format_lsn,
    parse_lsn,
    parse_segment_name,
    record_segments,
    segment_file_name,
)
from dbsafe.services.handle.vault_handle import Vault
from dbsafe.services.logchain.archive import read_wal_file, read_wal_head
from dbsafe.vault.repository import BlockError

# the server's own summaries of [LSN, the backup's start): rows, or None and why not
ServerSummaries = Callable[[int], tuple[list | None, str]]


@dataclass
class Tracking:
    """The map (None: the differential scans page LSNs, for ``reason``), and what building
    it cost: WAL bytes read from the vault and from pg_wal, and seconds."""

    map: ChangeMap | None
    reason: str | None
    vault_bytes: int = 0
    local_bytes: int = 0
    seconds: float = 0.0
    source: str = "wal"  # or "server-summaries"; "lsn-scan" without a map
    not_summaries: str | None = None  # why the server's own summaries were not used

    def describe(self) -> dict:
        source = self.source if self.map is not None else "lsn-scan"
        out = {"source": source, "seconds": round(self.seconds, 3),
               "wal_bytes_from_vault": self.vault_bytes,
               "wal_bytes_from_server": self.local_bytes}
        if self.map is not None:
            out.update(self.map.describe())
        else:
            out["reason"] = self.reason
        if self.not_summaries:
            out["server_summaries"] = self.not_summaries
        return out


def change_map(vault: Vault, server: dict, base: dict, start_lsn: int, timeline: int,
               segment_size: int, server_summaries: ServerSummaries | None = None
               ) -> Tracking:
    """The change map of ``[base["start_lsn"], start_lsn)`` on ``timeline``, or why not:
    from the server's own WAL summaries when it keeps them (``server_summaries``), else
    from the WAL."""
    t0 = time.perf_counter()
    reason = _refused(server, base, timeline)
    if reason is not None:
        return Tracking(None, reason)
    not_summaries = None
    if server_summaries is not None:
        rows, not_summaries = server_summaries(parse_lsn(base["start_lsn"]))
        if rows is not None:
            return Tracking(from_summaries(rows, parse_lsn(base["start_lsn"]), start_lsn),
                            None, seconds=time.perf_counter() - t0,
                            source="server-summaries")
    tracking = _from_wal(vault, server, base, start_lsn, timeline, segment_size, t0)
    tracking.not_summaries = not_summaries
    return tracking


def _from_wal(vault: Vault, server: dict, base: dict, start_lsn: int, timeline: int,
              segment_size: int, t0: float) -> Tracking:
    begin = parse_lsn(base["start_lsn"])
    reader = _SegmentReader(vault, server, segment_size)
    numbers = list(record_segments(begin, start_lsn, segment_size))

    def name(i: int) -> str:
        return segment_file_name(timeline, numbers[i], segment_size)

    builder = MapBuilder(begin, start_lsn, timeline, segment_size)
    reads: dict[int, Future] = {}
    decodes: dict[int, Future] = {}
    # two segments decoded at once (the decoder runs without the GIL), while a third is
    # read; one at a time when segments are large (each decode holds two and a copy)
    parallel = 2 if segment_size <= 64 << 20 else 1
    with ThreadPoolExecutor(1, thread_name_prefix="dbsafe-walread") as reading, \
            ThreadPoolExecutor(parallel, thread_name_prefix="dbsafe-waldecode") as decoding:
        def read(i: int) -> bytes:
            data = reads[i].result()
            if data is None:
                raise Unusable(reader.missing(name(i)))
            return data

        def decode(i: int) -> tuple[bytes, bytes | None, SegmentChanges | Unusable]:
            data = read(i)  # Unusable when it is missing: no fallback then
            following = read(i + 1) if i + 1 < len(numbers) else None
            try:
                return data, following, builder.decode(numbers[i], data, following)
            except Unusable as exc:  # the vault's copies may do (_vault_copies)
                return data, following, exc

        def submit(upto: int) -> None:  # reads run one ahead of the decodes
            for i in range(min(upto + 1, len(numbers) - 1) + 1):
                if i not in reads and i >= len(builder.map.segments):
                    reads[i] = reading.submit(reader.read, name(i))
            for i in range(min(upto, len(numbers) - 1) + 1):
                if i not in decodes and i >= len(builder.map.segments):
                    decodes[i] = decoding.submit(decode, i)

        try:
            for i, segno in enumerate(numbers):
                submit(i + parallel - 1)
                data, following, found = decodes.pop(i).result()
                if isinstance(found, Unusable):
                    copies = _vault_copies(reader, builder, numbers, i, data, following)
                    if copies is None:
                        raise found
                    builder.add(segno, *copies)
                else:
                    builder.take(segno, found)
                reads.pop(i, None)
        except Unusable as exc:
            for f in [*decodes.values(), *reads.values()]:
                f.cancel()
            return Tracking(None, str(exc), reader.vault_bytes, reader.local_bytes,
                            time.perf_counter() - t0)
    return Tracking(builder.finish(), None, reader.vault_bytes, reader.local_bytes,
                    time.perf_counter() - t0)


class Extension:
    """The change map from this backup's start to a later position (the row counts' WAL
    position, services/backup/counts.py), from pg_wal; rebuilt when asked past what it
    covers, None when the WAL up to there cannot be read whole (not flushed yet, ...)."""

    def __init__(self, vault: Vault, server: dict, start_lsn: int, timeline: int,
                 segment_size: int) -> None:
        self._args = (vault, server, {"start_lsn": format_lsn(start_lsn)}, timeline,
                      segment_size)
        self._lock = threading.Lock()
        self._map: ChangeMap | None = None

    def up_to(self, lsn: int) -> ChangeMap | None:
        with self._lock:
            if self._map is None or self._map.stop_lsn < lsn:
                vault, server, base, timeline, size = self._args
                self._map = _from_wal(vault, server, base, lsn, timeline, size,
                                      time.perf_counter()).map
                if self._map is None:
                    return None
            return self._map


def _vault_copies(reader: _SegmentReader, builder: MapBuilder, numbers: list[int], i: int,
                  data: bytes, following: bytes | None) -> tuple[bytes, bytes | None] | None:
    """Segment ``i`` and the next as the vault holds them, after their pg_wal copies made
    no sense (an old segment recycled under the name); None when neither came from pg_wal
    (the first reason stands), Unusable when the vault lacks one."""
    names = [builder.name(n) for n in numbers[i:i + 2 if following is not None else i + 1]]
    if not reader.from_server.intersection(names):
        return None
    copies: list[bytes] = []
    for name, held in zip(names, (data, following), strict=False):
        if name in reader.from_server:
            held = reader.from_vault(name)
            if held is None:
                raise Unusable(reader.missing(name) if name in reader.damaged else
                               f"WAL segment {name} in pg_wal is not that segment (an old "
                               "file recycled), and the vault does not hold it")
        assert held is not None
        copies.append(held)
    return copies[0], copies[1] if len(copies) > 1 else None


def _refused(server: dict, base: dict, timeline: int) -> str | None:
    if (server.get("recovery_model") or "SIMPLE") != "FULL":
        return ("the instance is in the SIMPLE recovery model: the vault holds no WAL to "
                "read its changes from")
    if base.get("timeline") != timeline:
        return (f"the base full is on timeline {base.get('timeline')}, the server on "
                f"{timeline}: the change map follows the WAL of one timeline")
    return None


class _SegmentReader:
    """A segment's bytes: the server's pg_wal's copy while it is there (no decompression,
    and usually in the page cache), else the vault's, else None. A pg_wal file can be an
    old segment recycled under a new name: the map then finds its pages' addresses wrong
    (``Unusable``) and ``change_map`` reads the vault's copy instead (``from_vault``).
    A pg_wal copy whose first 64 KiB, or else first MiB, end with a switch record is only
    those pages: nothing after a switch is WAL (docs/change-map.md)."""

    HEADS = (64 << 10, 1 << 20)

    def __init__(self, vault: Vault, server: dict, segment_size: int) -> None:
        self.vault = vault
        self.server = server
        self.segment_size = segment_size
        self.vault_bytes = self.local_bytes = 0
        self.damaged: dict[str, str] = {}
        self.from_server: set[str] = set()

    def read(self, name: str) -> bytes | None:
        data = self._server_copy(name)
        if data is not None:
            self.from_server.add(name)
            return data
        return self.from_vault(name)

    def _server_copy(self, name: str) -> bytes | None:
        path = Path(self.server["pgdata"]) / "pg_wal" / name
        try:
            data = None
            for size in self.HEADS:
                if size < self.segment_size and data is None:
                    data = self._switched_head(name, read_wal_head(self.server, path, name,
                                                                   size), size)
            if data is None:
                data, _ = read_wal_file(self.server, path, name)
        except FileNotFoundError:
            return None
        except DbsafeError as exc:  # a link or other planted file: never read
            self.damaged[name] = exc.message
            return None
        self.local_bytes += len(data)
        return data

    def _switched_head(self, name: str, head: bytes, size: int) -> bytes | None:
        """The pages of ``head`` (the first ``size`` bytes) up to the switch record that
        ends its segment there, or None (no switch there)."""
        parsed = parse_segment_name(name, self.segment_size)
        if parsed is None or len(head) < size:
            return None
        seg_lsn = parsed[1] * self.segment_size
        found = changes(head, parsed[1], self.segment_size)
        if not found.switched or found.undecoded:
            return None
        return head[:-(-(found.end_lsn - seg_lsn) // WAL_PAGE) * WAL_PAGE]

    def from_vault(self, name: str) -> bytes | None:
        repo = self.vault.repo
        record = repo.load_wal_record(self.server["system_identifier"], name)
        if record is None:
            return None
        try:
            data = b"".join(repo.read_block(bytes.fromhex(b)) for b in record["blocks"])
        except BlockError as exc:
            self.damaged[name] = f"its copy in the vault is damaged ({exc.reason})"
            return None
        self.vault_bytes += len(data)
        return data

    def missing(self, name: str) -> str:
        why = self.damaged.get(name)
        if why:
            return f"WAL segment {name} cannot be read: {why}"
        return (f"WAL segment {name} is neither in the vault nor in the server's pg_wal "
                "(a gap in the log chain)")

