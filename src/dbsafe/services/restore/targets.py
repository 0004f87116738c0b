"""Where a restore may write: new folders below the restore roots an administrator allowed.

dbsafe restores as root, and an operator of the API names the folder. So a target (a data
directory, a files folder, a tablespace's place) must

- lie below one of this client's **restore roots** (``restore_roots`` in ``client.json``,
  changed only with ``dbsafe vault restore-roots add|remove`` on the host; default
  ``/var/lib/dbsafe/restores``, created 0755 when first used);
- **not exist yet**: dbsafe creates it, and chowns and chmods only what it created;
- have no link among its parts below the root (checked when the restore is asked for, and
  held while it runs: each part is opened with ``O_NOFOLLOW`` from the root's descriptor);
- be named with letters, digits and ``._-+@`` only: the path reaches ``pg_ctl``'s shell
  and ``restore_command``, where a space, a quote or ``$(...)`` would be syntax.

``place`` checks without writing (the restore checks the portal and the API show use it);
``create`` makes the folder and returns it open (core/fdtree.py) with what is needed to
remove exactly what was made. A restore may instead go below a folder its caller made and
holds open (``Held``: a single-database restore's staging folder, which sits in a folder
the ``postgres`` OS user owns and can rename things in): it is then written through that
descriptor, whatever its path names by then.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from dbsafe.core.errors import DbsafeError
from dbsafe.core.fdtree import Tree, make_dir, make_path, open_dir
from dbsafe.core.path_rules import absolute_path_problem, unsafe_part
from dbsafe.services.handle.vault_handle import Vault

SETTING = "restore_roots"
DEFAULT_ROOT = Path("/var/lib/dbsafe/restores")
ROOT_MODE = 0o755       # the postgres user must pass through a root to its data directory
BETWEEN_MODE = 0o755    # folders dbsafe makes between a root and a target


def restore_roots(vault: Vault) -> list[Path]:
    """This client's restore roots: as configured now, else the default."""
    configured = vault.setting_now(SETTING)
    if configured is None:
        return [DEFAULT_ROOT]
    return [Path(os.path.abspath(p)) for p in configured]


def name_problem(path: str) -> str | None:
    """Why ``path`` cannot name a folder dbsafe writes (None when it can)."""
    problem = absolute_path_problem(path)
    if problem:
        return f"it {problem}"
    part = unsafe_part(path)
    if part is not None:
        return (f"its part {part[:100]!r} holds characters other than letters, digits and "
                "._-+@ (no spaces, quotes, $, backticks or other shell syntax)")
    return None


def add_root(vault: Vault, path: Path) -> list[str]:
    """Allow restores below ``path`` (created 0755 when missing); the roots after."""
    path = Path(os.path.abspath(path))
    problem = name_problem(str(path))
    if problem:
        raise DbsafeError("restore.root_invalid", path=path, reason=problem)
    if path.exists() and not path.is_dir():
        raise DbsafeError("restore.root_invalid", path=path, reason="it is not a folder")
    roots = [str(r) for r in restore_roots(vault)]
    if str(path) not in roots:
        make_path(path, ROOT_MODE)
        vault.settings[SETTING] = [*roots, str(path)]
        vault.save_settings()
    return [str(r) for r in restore_roots(vault)]


def remove_root(vault: Vault, path: Path) -> list[str]:
    """Stop allowing restores below ``path`` (nothing on disk changes); the roots after."""
    path = Path(os.path.abspath(path))
    roots = [str(r) for r in restore_roots(vault)]
    if str(path) not in roots:
        raise DbsafeError("restore.root_invalid", path=path,
                          reason=f"it is not a restore root (they are: {', '.join(roots)})")
    vault.settings[SETTING] = [r for r in roots if r != str(path)]
    vault.save_settings()
    return [str(r) for r in restore_roots(vault)]


@dataclass(frozen=True)
class Held:
    """A folder the caller made for a restore and holds open (``fd``, not closed here)."""
    path: Path
    fd: int


@dataclass(frozen=True)
class Placement:
    """A target that passed the rules: its root and the names below it (the target last);
    ``root_fd``: the root's descriptor when the caller holds it open (``Held``)."""
    root: Path
    parts: tuple[str, ...]
    root_fd: int | None = None

    @property
    def path(self) -> Path:
        return self.root.joinpath(*self.parts)


def refusal(roots: list[Path], path: Path) -> tuple[str, dict] | None:
    """(error code, details) that refuse ``path`` as a target below ``roots``, or None.

    The roots are checked before anything about the path is looked at, so that a caller
    cannot learn what exists outside them."""
    text = str(path)
    problem = name_problem(text)
    if problem:
        return "restore.target_unsafe", {"reason": problem}
    root = _root_of(roots, path)
    if root is None:
        return "restore.target_outside_roots", {
            "roots": ", ".join(map(str, roots)) or "none are configured"}
    walked = root
    for part in path.relative_to(root).parts:
        walked = walked / part
        if walked.is_symlink():
            return "restore.target_unsafe", {"reason": f"{walked} is a link"}
        if not walked.exists():
            return None
        if walked == path:
            return "restore.target_exists", {}
        if not walked.is_dir():
            return "restore.target_unsafe", {"reason": f"{walked} is not a folder"}
    return None


def place(vault: Vault, path: Path, under: Path | Held | None = None) -> Placement:
    """``path`` as a new restore target below the vault's roots (or below ``under``, a
    folder a drill or a staging step made for itself); refuses it otherwise."""
    path = Path(os.path.abspath(path))
    held = under if isinstance(under, Held) else None
    below = under.path if isinstance(under, Held) else under
    roots = [Path(os.path.abspath(below))] if below is not None else restore_roots(vault)
    refused = refusal(roots, path)
    if refused:
        raise DbsafeError(refused[0], path=path, **refused[1])
    root = _root_of(roots, path)
    assert root is not None
    return Placement(root, path.relative_to(root).parts,
                     held.fd if held is not None else None)


def _root_of(roots: list[Path], path: Path) -> Path | None:
    return next((r for r in roots if path.is_relative_to(r) and path != r), None)


def place_tablespace(vault: Vault, oid: str, path: Path, under: Path | Held | None
                     ) -> Placement:
    """A tablespace's target, refused as ``restore.tablespace_target`` with the reason."""
    try:
        return place(vault, path, under)
    except DbsafeError as exc:
        raise DbsafeError("restore.tablespace_target", oid=oid, path=path,
                          reason=exc.message) from None


def apart(paths: list[Path]) -> None:
    """Refuse targets of one restore that are the same folder or lie inside each other."""
    for i, a in enumerate(paths):
        for b in paths[i + 1:]:
            if a.is_relative_to(b) or b.is_relative_to(a):
                raise DbsafeError("restore.target_unsafe", path=a,
                                  reason=f"it overlaps {b}, another target of the restore")


@dataclass
class Made:
    """A target created by ``create``: open, with the folder above it, and the top-most
    folder this restore made (removing it removes everything the restore made there)."""
    tree: Tree
    parent_fd: int
    top: tuple[int, str]  # (descriptor of its parent, its name)
    fds: list[int] = field(default_factory=list)

    def remove(self) -> None:
        """Remove what was made (never what existed before); before ``close``."""
        fd, name = self.top
        shutil.rmtree(name, dir_fd=fd, ignore_errors=True)

    def close(self) -> None:
        self.tree.close()
        for fd in self.fds:
            os.close(fd)
        self.fds.clear()


def create(placement: Placement, mode: int) -> Made:
    """Make the target (``mode``), and the folders between it and its root, through
    descriptors: a link or a file planted on the way since ``place`` is refused, and a
    target that appeared meanwhile is ``restore.target_exists``."""
    if placement.root == DEFAULT_ROOT and placement.root_fd is None:
        make_path(DEFAULT_ROOT, ROOT_MODE)
    path = placement.path
    try:
        fd = (os.dup(placement.root_fd) if placement.root_fd is not None else
              os.open(placement.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
    except OSError as exc:
        raise DbsafeError("restore.target_unsafe", path=path,
                          reason=f"its restore root cannot be opened ({exc.strerror})") from None
    fds, top = [fd], None
    try:
        for part in placement.parts[:-1]:
            try:
                fd = make_dir(part, fd, BETWEEN_MODE)
                top = top or (fds[-1], part)
            except FileExistsError:
                fd = open_dir(part, fd)
            fds.append(fd)
        try:
            target = make_dir(placement.parts[-1], fd, mode)
        except FileExistsError:
            raise DbsafeError("restore.target_exists", path=path) from None
    except BaseException as exc:
        if top is not None:
            shutil.rmtree(top[1], dir_fd=top[0], ignore_errors=True)
        for fd in fds:
            os.close(fd)
        if isinstance(exc, OSError):
            raise DbsafeError("restore.target_unsafe", path=path,
                              reason=f"a part of it changed while it was made "
                                     f"({exc.strerror})") from None
        raise
    return Made(Tree(target, path), fds[-1], top or (fds[-1], placement.parts[-1]), fds)
