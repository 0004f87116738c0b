"""A single-database restore's staging folder (services/restore/staging.py), without a cluster: made
next to the target's data directory, reached only through descriptors, so the ``postgres``
user (who owns the folder it sits in) cannot redirect what root writes there."""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

import pytest

from dbsafe.core.errors import DbsafeError
from dbsafe.services.restore import staging
from dbsafe.services.restore import targets as restore_targets


def _target(parent: Path) -> dict:
    return {"name": "tgt", "pgdata": str(parent / "pgdata")}


def test_the_staging_folder_is_made_next_to_the_data_directory(tmp_path):
    (tmp_path / "pgdata").mkdir()
    made = staging.create(_target(tmp_path), "restore-1")
    try:
        assert made.path == tmp_path / "dbsafe-staging-restore-1"
        st = made.path.lstat()
        assert stat.S_IMODE(st.st_mode) == 0o711 and st.st_uid == os.geteuid()
        dump = made.folder_for("dump", "postgres")
        assert dump.lstat().st_uid == pwd.getpwnam("postgres").pw_uid
        with pytest.raises(DbsafeError) as again:  # a job's folder is made once
            staging.create(_target(tmp_path), "restore-1")
        assert again.value.code == "restore.target_unsafe"
    finally:
        made.remove()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pgdata"]


def test_a_data_directory_whose_folder_has_shell_syntax_is_refused(tmp_path):
    with pytest.raises(DbsafeError) as refused:
        staging.parent_of(_target(tmp_path / "x$(id)"))
    assert refused.value.code == "restore.target_unsafe"


def test_a_staging_folder_swapped_for_a_link_redirects_nothing(tmp_path):
    """The owner of the data directory's folder renames the staging folder away and puts a
    link to another folder in its place: the restore still writes into the folder dbsafe
    made (now under the other name), nothing lands where the link points, and removing
    the staging folder does not follow the link."""
    parent, elsewhere = tmp_path / "parent", tmp_path / "elsewhere"
    parent.mkdir()
    elsewhere.mkdir()
    made = staging.create(_target(parent), "restore-2")
    moved = parent / "moved"
    os.rename(made.path, moved)
    os.symlink(elsewhere, made.path)
    try:
        placement = restore_targets.place(None, made.path / "pgdata", made.held)
        tree = restore_targets.create(placement, 0o700)
        tree.close()
        made.folder_for("dump", "postgres")
        assert sorted(p.name for p in moved.iterdir()) == ["dump", "pgdata"]
        assert list(elsewhere.iterdir()) == []
    finally:
        made.remove()
    assert made.path.is_symlink() and list(elsewhere.iterdir()) == []
