"""How a restore writes, without a cluster: through descriptors (core/fdtree.py), into new
folders below restore roots (services/restore/targets.py), and the shell command recovery
runs (engines/postgres/recovery.py) quoted so that no path can run a command."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest

from dbsafe.core.errors import DbsafeError
from dbsafe.core.fdtree import Tree, make_dir, open_dir, read_regular, replace_file, write_new
from dbsafe.engines.postgres.recovery import STAGE_FAILED, restore_command
from dbsafe.engines.postgres.restore import conf_value, dir_mode, file_mode
from dbsafe.services.restore import targets as restore_targets

SEGMENT = "000000010000000000000007"


class Client:
    """What restore_targets needs of a Vault: this client's settings."""

    def __init__(self, roots: list[Path] | None = None) -> None:
        self.settings = {} if roots is None else {"restore_roots": [str(r) for r in roots]}
        self.saved = 0

    def save_settings(self) -> None:
        self.saved += 1

    def setting_now(self, key: str):
        return self.settings.get(key)


def _snapshot(folder: Path) -> dict:
    out = {}
    for dirpath, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(dirpath, name)
            st = path.lstat()
            body = os.readlink(path) if path.is_symlink() else \
                path.read_bytes() if path.is_file() else None
            out[str(path.relative_to(folder))] = (st.st_mode, st.st_uid, body)
    return out


@pytest.fixture
def decoy(tmp_path: Path) -> Path:
    """A folder outside every target, that planted links aim at."""
    folder = tmp_path / "decoy"
    folder.mkdir()
    (folder / "passwd").write_text("root:x:0:0\n")
    os.chmod(folder, 0o755)
    return folder


# --- core/fdtree.py -----------------------------------------------------------------------

def _tree(path: Path) -> Tree:
    path.mkdir()
    return Tree(open_dir(path), path)


def test_a_tree_never_writes_through_a_planted_link(tmp_path, decoy):
    before = _snapshot(decoy)
    tree = _tree(tmp_path / "t")
    try:
        tree.mkdir("global", 0o700)
        os.symlink(decoy / "passwd", tmp_path / "t" / "global" / "pg_control")
        os.symlink(decoy, tmp_path / "t" / "base")
        with pytest.raises(FileExistsError):
            tree.create("global/pg_control", 0o600, 8192)
        with pytest.raises(FileExistsError):
            write_new(tree.folder("global"), "pg_control", b"x")
        with pytest.raises(OSError) as caught:
            tree.create("base/1/1259", 0o600)  # a folder on the way is a link
        assert caught.value.errno in (errno.ELOOP, errno.ENOTDIR)
        # a file replaced by rename: the planted link goes, its target stays as it was
        replace_file(tree.folder("global"), "pg_control", b"new", 0o600)
        assert (tmp_path / "t" / "global" / "pg_control").read_bytes() == b"new"
        # modes are exactly what is asked, whatever the umask
        old = os.umask(0o077)
        try:
            tree.mkdir("log", 0o750)
            tree.create("log/x", 0o640, 3)
        finally:
            os.umask(old)
        assert (tmp_path / "t" / "log").stat().st_mode & 0o7777 == 0o750
        assert (tmp_path / "t" / "log" / "x").stat().st_mode & 0o7777 == 0o640
    finally:
        tree.close()
    assert _snapshot(decoy) == before


def test_read_regular_refuses_what_is_not_a_plain_file(tmp_path, decoy):
    fd = open_dir(tmp_path)
    try:
        (tmp_path / "conf").write_text("port = 5\n")
        assert read_regular(fd, "conf") == b"port = 5\n"
        assert read_regular(fd, "absent") is None
        os.symlink(decoy / "passwd", tmp_path / "link")
        os.link(decoy / "passwd", tmp_path / "hard")
        os.mkfifo(tmp_path / "fifo")
        (tmp_path / "big").write_bytes(b"x" * 100)
        for name in ("link", "hard", "fifo"):
            with pytest.raises(OSError):
                read_regular(fd, name)
        with pytest.raises(OSError):
            read_regular(fd, "big", limit=10)
    finally:
        os.close(fd)


def test_modes_are_postgresql_s_own():
    assert file_mode(0o4755) == 0o640 and file_mode(0o600) == 0o600
    assert file_mode(0o644) == 0o640 and file_mode(0) == 0o600
    assert dir_mode(0o777) == 0o750 and dir_mode(0o700) == 0o700 and dir_mode(0o2755) == 0o750


# --- services/restore/targets.py ----------------------------------------------------------

def _refused(code: str, client: Client, path: Path, under: Path | None = None) -> str:
    with pytest.raises(DbsafeError) as caught:
        restore_targets.place(client, path, under)
    assert caught.value.code == code, caught.value.message
    return caught.value.message


def test_a_target_must_be_new_below_a_root_and_plainly_named(tmp_path, decoy):
    root = tmp_path / "restores"
    root.mkdir()
    client = Client([root])
    assert restore_targets.place(client, root / "a" / "b").parts == ("a", "b")
    # outside the roots, the root itself, or out of it by '..': refused before anything
    # about the path is looked at (existing or not)
    for path in (decoy, decoy / "new", root, root / ".." / "decoy" / "x", Path("/etc")):
        message = _refused("restore.target_outside_roots", client, path)
        assert str(root) in message
    # dbsafe creates its target: present, even empty, is refused
    (root / "empty").mkdir()
    _refused("restore.target_exists", client, root / "empty")
    # no link below the root, at the target or on the way to it
    os.symlink(decoy, root / "link")
    assert "is a link" in _refused("restore.target_unsafe", client, root / "link")
    assert "is a link" in _refused("restore.target_unsafe", client, root / "link" / "x")
    (root / "file").write_text("")
    assert "not a folder" in _refused("restore.target_unsafe", client, root / "file" / "x")
    # nothing a shell or a config file would read as syntax
    for name in ("x$(id>p)", "x`id`", "a b", "it's", 'say"hi"', "x;id", "a\nb", "x%f",
                 "x\\y", "*", "x|y"):
        message = _refused("restore.target_unsafe", client, root / name)
        assert "letters, digits" in message or "control" in message or "backslash" in message
    assert not (root / "x$(id>p)").exists() and not Path("p").exists()
    # the default root when none is configured; none at all when all were removed
    assert restore_targets.restore_roots(Client()) == [restore_targets.DEFAULT_ROOT]
    assert "none are configured" in _refused("restore.target_outside_roots",
                                             Client([]), root / "x")
    # a caller's own folder instead of the roots (a drill's, a staging folder)
    assert restore_targets.place(client, decoy / "pgdata", under=decoy).root == decoy


def test_create_makes_only_new_folders_and_removes_only_them(tmp_path, decoy):
    root = tmp_path / "restores"
    (root / "team").mkdir(parents=True)
    client = Client([root])
    old = os.umask(0o077)
    try:
        made = restore_targets.create(restore_targets.place(client, root / "team" / "a" / "b"),
                                      0o700)
    finally:
        os.umask(old)
    try:
        assert (root / "team" / "a").stat().st_mode & 0o7777 == 0o755
        assert (root / "team" / "a" / "b").stat().st_mode & 0o7777 == 0o700
        made.tree.create("f", 0o600, 10)
        made.remove()
    finally:
        made.close()
    assert os.listdir(root / "team") == []  # what existed before stays
    # a link planted between the check and the creation is not followed
    placement = restore_targets.place(client, root / "team" / "c" / "d")
    os.symlink(decoy, root / "team" / "c")
    before = _snapshot(decoy)
    with pytest.raises(DbsafeError) as caught:
        restore_targets.create(placement, 0o700)
    assert caught.value.code == "restore.target_unsafe"
    assert _snapshot(decoy) == before
    # a target that appeared meanwhile
    placement = restore_targets.place(client, root / "team" / "e")
    (root / "team" / "e").mkdir()
    with pytest.raises(DbsafeError) as caught:
        restore_targets.create(placement, 0o700)
    assert caught.value.code == "restore.target_exists"


def test_restore_roots_are_set_on_the_client(tmp_path):
    client = Client()
    root = tmp_path / "r" / "s"
    assert restore_targets.add_root(client, root) == [str(restore_targets.DEFAULT_ROOT),
                                                      str(root)]
    assert root.is_dir() and root.stat().st_mode & 0o777 == 0o755 and client.saved == 1
    assert restore_targets.remove_root(client, restore_targets.DEFAULT_ROOT) == [str(root)]
    for bad in (tmp_path / "a b", tmp_path / "x$(id)"):
        with pytest.raises(DbsafeError) as caught:
            restore_targets.add_root(client, bad)
        assert caught.value.code == "restore.root_invalid" and not bad.exists()
    with pytest.raises(DbsafeError):
        restore_targets.remove_root(client, tmp_path / "never")


# --- engines/postgres/recovery.py: restore_command ----------------------------------------

def _as_postgresql_runs(command: str, name: str, dest: str) -> str:
    """restore_command with %f, %p and %% replaced as PostgreSQL does before it runs it."""
    out, i = [], 0
    while i < len(command):
        if command[i] == "%" and i + 1 < len(command):
            out.append({"f": name, "p": dest, "%": "%"}.get(command[i + 1],
                                                           command[i:i + 2]))
            i += 2
        else:
            out.append(command[i])
            i += 1
    return "".join(out)


@pytest.mark.parametrize("folder", [
    "plain.stage", "x$(touch PWNED)", "x`touch PWNED`", "it's $HOME", 'a "b" c', "50%f%p%%",
    "x;touch PWNED;#", "x\\$(touch PWNED)"])
def test_restore_command_runs_no_command_from_its_path(tmp_path, folder):
    stage = tmp_path / folder
    stage.mkdir()
    (stage / SEGMENT).write_bytes(b"wal")
    (stage / "00000002.history").write_bytes(b"history")
    work = tmp_path / "pgdata"
    work.mkdir()
    command = restore_command(stage)

    def run(name: str) -> int:
        return subprocess.run(["sh", "-c", _as_postgresql_runs(command, name,
                                                                "pg_wal/RECOVERYXLOG")],
                              cwd=work, timeout=30).returncode

    (work / "pg_wal").mkdir()
    assert run(SEGMENT) == 0
    assert (work / "pg_wal" / "RECOVERYXLOG").read_bytes() == b"wal"
    assert not (stage / SEGMENT).exists()  # a segment is moved
    assert run("00000002.history") == 0 and (stage / "00000002.history").exists()
    assert run("000000010000000000000008") == 1  # not staged: "not found"
    assert not list(tmp_path.rglob("PWNED"))


def test_restore_command_aborts_recovery_once_staging_failed(tmp_path):
    """A file still awaited (its .wait marker) when staging fails: the command exits above
    125, which PostgreSQL takes as a failure of the command and aborts recovery on (a plain
    "not found" would end recovery there and promote short of the target)."""
    stage = tmp_path / "stage"
    stage.mkdir()
    (stage / f"{SEGMENT}.wait").write_bytes(b"")
    (stage / STAGE_FAILED).write_bytes(b"")
    work = tmp_path / "pgdata"
    (work / "pg_wal").mkdir(parents=True)
    proc = subprocess.run(["sh", "-c", _as_postgresql_runs(restore_command(stage), SEGMENT,
                                                            "pg_wal/RECOVERYXLOG")],
                          cwd=work, timeout=30)
    assert proc.returncode > 125
    assert not (work / "pg_wal" / "RECOVERYXLOG").exists()


def test_configuration_values_are_quoted_as_postgresql_reads_them():
    assert conf_value("plain") == "'plain'"
    assert conf_value("it's") == "'it''s'"
    assert conf_value("a\\nb") == "'a\\\\nb'"


def test_make_dir_refuses_an_existing_name(tmp_path, decoy):
    fd = open_dir(tmp_path)
    try:
        os.symlink(decoy, tmp_path / "stage")
        with pytest.raises(FileExistsError):
            make_dir("stage", fd, 0o700)
    finally:
        os.close(fd)


def test_pg_ctl_never_sees_a_path_its_shell_would_read(tmp_path):
    """pg_ctl runs the server through sh -c with the data directory's path in it: a start
    is refused before pg_ctl runs when that path holds anything but plain names."""
    from dbsafe.engines.postgres.restore import start

    pgdata = tmp_path / "x$(touch PWNED)"
    pgdata.mkdir()
    with pytest.raises(DbsafeError) as caught:
        start(pgdata, "/nonexistent/bin", 5999, "postgres")
    assert caught.value.code == "restore.target_unsafe"
    assert os.listdir(pgdata) == [] and not list(tmp_path.rglob("PWNED"))
