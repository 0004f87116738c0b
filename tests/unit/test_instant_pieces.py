"""Pieces of instant access that need no FUSE: a file's local pages (cow.py), the run's
error as its state file keeps it (daemon.py), durations (core/units.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dbsafe.core.errors import DbsafeError
from dbsafe.core.units import parse_duration
from dbsafe.services.access.cow import PAGE, LocalPages
from dbsafe.services.restore.pitr import WalStager


def test_only_pages_written_in_part_are_copied_up(tmp_path):
    local = LocalPages(tmp_path / "f", 10 * PAGE, 10 * PAGE)
    assert local.pages_to_copy_up(0, PAGE) == []                 # a whole page: no copy
    assert local.pages_to_copy_up(100, 10) == [0]
    assert local.pages_to_copy_up(PAGE - 10, 20) == [0, 1]       # across a boundary
    assert local.pages_to_copy_up(PAGE, 3 * PAGE) == []          # whole pages only
    local.write(100, b"x" * 10, track=True)
    assert local.pages == {0}
    assert local.pages_to_copy_up(200, 10) == []                 # already local
    assert local.pages_to_copy_up(12 * PAGE + 5, 10) == []       # past the point's bytes
    local.close(remove=True)
    assert not (tmp_path / "f").exists()


def test_a_truncation_cuts_the_points_bytes_and_drops_pages_past_it(tmp_path):
    local = LocalPages(tmp_path / "f", 4 * PAGE, 4 * PAGE)
    local.put_page(3, b"z" * PAGE)
    local.truncate(PAGE + 100)
    assert local.base_limit == PAGE + 100 and local.pages == set()
    local.truncate(4 * PAGE)                                     # grown again: zeros there
    assert local.base_limit == PAGE + 100
    assert local.read(3 * PAGE, PAGE) == bytes(PAGE)
    local.close()


def test_a_runs_error_is_kept_as_json():
    """A DbsafeError's details may hold paths: the state file must still be written (it
    once failed, and hid the server's own message behind a TypeError)."""
    from dbsafe.services.access.daemon import _error

    error = _error(DbsafeError("restore.start_failed", pgdata=Path("/x/pgdata"),
                               log=Path("/x/log"), reason="could not locate checkpoint"))
    kept = json.loads(json.dumps(error))
    assert kept["code"] == "restore.start_failed"
    assert "could not locate checkpoint" in kept["message"]
    assert kept["details"]["pgdata"] == "/x/pgdata"


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("90m", 5400), ("4h", 14400),
                                               ("2d", 172800), ("15", 900), ("1 h", 3600)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0m", "-3h", "4w", "h", "1.5h"])
def test_durations_refused(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_a_view_is_mounted_only_where_no_one_but_root_can_change_the_path():
    import os
    import pwd
    import shutil
    import tempfile

    from dbsafe.services.access.runs import mount_folder_problem

    top = Path(tempfile.mkdtemp(dir="/var/tmp"))  # root's, 0700, in a sticky folder
    try:
        folder = top / "mnt"
        folder.mkdir(mode=0o755)
        assert mount_folder_problem(folder) is None
        (folder / "x").write_text("")
        assert "not empty" in mount_folder_problem(folder)
        (folder / "x").unlink()
        link = top / "link"
        link.symlink_to(folder)
        assert "is a link" in mount_folder_problem(link)
        postgres = pwd.getpwnam("postgres")
        os.chown(top, postgres.pw_uid, postgres.pw_gid)  # its owner could swap "mnt"
        assert "not owned by root" in mount_folder_problem(folder)
        os.chown(top, 0, 0)
        os.chmod(top, 0o777)                             # anyone could swap it
        assert "writable by others" in mount_folder_problem(folder)
        os.chmod(top, 0o1777)                            # sticky: root's entry stays
        assert mount_folder_problem(folder) is None
    finally:
        shutil.rmtree(top)


def test_a_view_reads_blocks_once_and_decodes_them_again_from_what_it_kept(tmp_path):
    """A file of a point read at any offset equals its bytes; a block read again after its
    decoded copy left the (small) cache is decoded from the stored bytes kept, not
    fetched again; a damaged stored block is refused as every read of the vault does."""
    import os

    from dbsafe.services.access.view import BlockCache, PointView
    from dbsafe.vault.repository import Repository

    repo = Repository.init(tmp_path / "vault")
    bs = repo.block_size
    data = os.urandom(bs) + bytes(bs) + os.urandom(bs // 2)
    with repo.writing("test"):
        sink = repo.block_sink(level=1)
        ids = [sink.store(data[i:i + bs])[0].hex() for i in range(0, len(data), bs)]
        sink.close()
    manifest = {"point_id": "p1", "type": "full", "block_size": bs, "wal": [],
                "dirs": [{"path": "base", "mode": 0o700}],
                "files": [{"path": "base/f", "size": len(data), "mode": 0o600, "mtime": 0,
                           "blocks": ids}]}
    view = PointView(repo, manifest, None, BlockCache(budget=bs))  # one decoded block
    f = view.files["base/f"]
    for offset, length in [(0, 8192), (bs - 100, 300), (2 * bs + 5, 10 ** 9), (5, 0)]:
        assert view.read(f, offset, length) == data[offset:offset + length]
    fetched = view.fetched_blocks
    assert fetched == 3  # each block once (the zero block too: it is stored)
    for offset in (0, bs, 2 * bs, 0):
        assert view.read(f, offset, 8192) == data[offset:offset + 8192]
    assert view.fetched_blocks == fetched  # decoded again, not fetched again
    assert view.read_cached(f, 0, 8192) in (None, data[:8192])
    assert sorted(view.dirs) == ["", "base"]
    where = repo.index.get(bytes.fromhex(ids[0]))
    pack = next(p for p in (tmp_path / "vault").rglob(where.pack_id + "*") if p.is_file())
    raw = bytearray(pack.read_bytes())
    raw[where.offset + where.length // 2] ^= 0xFF
    pack.write_bytes(bytes(raw))
    fresh = PointView(repo, manifest, None, BlockCache(budget=bs))
    with pytest.raises(DbsafeError) as refused:
        fresh.read(fresh.files["base/f"], 0, 10)
    assert refused.value.code == "vault.block_corrupt"


def test_an_instances_progress_is_the_wal_postgresql_took_not_what_was_staged(tmp_path):
    """The stager runs a window ahead of recovery: what PostgreSQL has taken (moved out of
    the stage by its restore_command, in order) is how far replay got."""
    names = [f"0000000100000000000000{n:02X}" for n in (1, 2, 3)]
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        stager = WalStager(None, "1", names, fd, os.getuid(), os.getgid(), 1)  # type: ignore
        stager.prepare()
        assert stager.taken() == 0
        for name in names[:2]:  # staged: the marker goes, the file waits for recovery
            (tmp_path / f"{name}.wait").unlink()
            (tmp_path / name).write_bytes(b"wal")
        assert stager.taken() == 0
        (tmp_path / names[0]).unlink()  # restore_command moved it into pg_wal
        assert stager.taken() == 1
        (tmp_path / names[1]).unlink()
        assert stager.taken() == 2  # the third is still marked: not taken
    finally:
        os.close(fd)
