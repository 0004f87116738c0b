"""Which folders dbsafe runs PostgreSQL's programs from: only folders whose every component
root owns and only root can write, checked at registration and again at every run
(engines/postgres/cluster.py)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import PG_BIN, chown_postgres

from dbsafe.core.errors import DbsafeError
from dbsafe.engines.postgres import cluster

ROOT_HELD = Path("/var/lib")  # root's, 0755: a place for folders only root can change


@pytest.fixture
def root_dir() -> Iterator[Path]:
    """A folder only root can change (not under /tmp or /var/tmp: those are writable by
    all, so nothing under them is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="dbsafe-test-bin-", dir=ROOT_HELD))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path)


def _planted(folder: Path, marker: Path, names=("pg_ctl", "postgres", "pg_dump")) -> None:
    """Programs that leave ``marker`` behind when they run."""
    folder.mkdir(exist_ok=True)
    for name in names:
        program = folder / name
        program.write_text(f"#!/bin/sh\ntouch {marker}\n")
        program.chmod(0o755)


def _refused(fn, *args) -> DbsafeError:
    with pytest.raises(DbsafeError) as caught:
        fn(*args)
    assert caught.value.code == "server.bin_dir_unsafe", caught.value
    return caught.value


def test_the_packaged_folder_is_trusted_and_links_resolve():
    assert cluster.find_bin_dir(15) == str(PG_BIN)
    assert cluster.trusted_bin_dir(str(PG_BIN)) == str(PG_BIN)
    if Path("/usr/local/bin/pg_ctl").is_symlink():  # Debian's link to the packaged one
        assert cluster.trusted_program("/usr/local/bin/pg_ctl") == str(PG_BIN / "pg_ctl")


def test_folders_others_can_change_are_refused(root_dir, tmp_path):
    marker = root_dir / "ran"
    # owned by postgres
    theirs = root_dir / "theirs"
    _planted(theirs, marker)
    chown_postgres(theirs)
    err = _refused(cluster.find_bin_dir, 15, str(theirs))
    assert str(theirs) in err.message and "owned by postgres" in err.message
    # root's, but group-writable
    shared = root_dir / "shared"
    _planted(shared, marker)
    shared.chmod(0o775)
    err = _refused(cluster.find_bin_dir, 15, str(shared))
    assert "writable by its group or by others (mode 0775)" in err.message
    # root's, but a component above it is writable by all (/tmp)
    under_tmp = tmp_path / "bin"
    _planted(under_tmp, marker)
    err = _refused(cluster.find_bin_dir, 15, str(under_tmp))
    assert "/tmp: the folder is writable" in err.message
    # a link in a root-held place to a folder postgres owns: the target counts
    link = root_dir / "link"
    link.symlink_to(theirs)
    _refused(cluster.find_bin_dir, 15, str(link))
    # a root-held folder holding a program postgres owns, or one anyone may rewrite
    mixed = root_dir / "mixed"
    _planted(mixed, marker)
    chown_postgres(mixed / "pg_dump")
    err = _refused(cluster.trusted_program, str(mixed / "pg_dump"))
    assert f"{mixed}/pg_dump: the program is owned by postgres" in err.message
    (mixed / "pg_ctl").chmod(0o777)
    _refused(cluster.trusted_program, str(mixed / "pg_ctl"))
    # pg_ctl starts the postgres of its own folder: that one counts too
    (mixed / "pg_ctl").chmod(0o755)
    chown_postgres(mixed / "postgres")
    err = _refused(cluster.trusted_program, str(mixed / "pg_ctl"))
    assert f"{mixed}/postgres" in err.message
    _refused(cluster.trusted_bin_dir, "relative/bin")
    assert not marker.exists()


def test_a_root_held_folder_of_ones_own_is_accepted(root_dir):
    mine = root_dir / "pg" / "bin"
    mine.parent.mkdir()
    _planted(mine, root_dir / "ran")
    assert cluster.find_bin_dir(15, str(mine)) == str(mine)


def test_every_run_checks_the_program_again(root_dir):
    """The catalog row may have been changed since registration: run_as_owner refuses a
    program in a folder postgres owns before anything runs."""
    marker = root_dir / "ran"
    theirs = root_dir / "theirs"
    _planted(theirs, marker)
    chown_postgres(theirs)
    _refused(cluster.run_as_owner, "postgres", [str(theirs / "pg_ctl"), "start"])
    _refused(cluster.run_as_owner, "postgres", [str(theirs / "pg_dump"), "--version"])
    assert not marker.exists()
    proc = cluster.run_as_owner("postgres", [str(PG_BIN / "pg_dump"), "--version"],
                                client=True)
    assert proc.returncode == 0 and "pg_dump (PostgreSQL) 15" in proc.stdout
