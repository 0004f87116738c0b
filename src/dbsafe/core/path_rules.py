"""What a path may look like before dbsafe, running as root, writes there.

Two kinds of path reach a restore from outside: paths stored in a vault (a manifest's
files, folders and tablespaces), which anyone who can write the storage can forge, and
folders an operator names (a restore target), which end up on command lines that a shell
reads (``pg_ctl start`` runs the server through ``sh -c``, ``restore_command`` is shell).
The first must stay below the folder they are joined to; the second must hold nothing a
shell would act on. Each check returns what is wrong, or None: callers raise their own
error naming the entry.
"""

from __future__ import annotations

import re

MAX_PATH = 4096   # PATH_MAX
MAX_PART = 255    # NAME_MAX: a longer file name is an error of the file system
# Letters, digits and ._-+@ only: nothing a shell, a config file's quoting or
# restore_command's %-escapes would read as syntax.
SAFE_PART = re.compile(r"[A-Za-z0-9._+@-]+")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _parts_problem(parts: list[str]) -> str | None:
    for part in parts:
        if part in ("", ".", ".."):
            return f"has an empty, '.' or '..' part ({part!r})"
        if len(part.encode()) > MAX_PART:
            return f"has a part longer than {MAX_PART} bytes"
    return None


def _text_problem(path: object) -> str | None:
    if not isinstance(path, str) or not path:
        return "is not a non-empty string"
    if len(path.encode()) > MAX_PATH:
        return f"is longer than {MAX_PATH} bytes"
    if CONTROL.search(path):
        return "holds a control character"
    if "\\" in path:
        return "holds a backslash"
    return None


def relative_path_problem(path: object) -> str | None:
    """Why ``path`` is not a normalised relative path that stays below the folder it is
    joined to (None when it is one)."""
    problem = _text_problem(path)
    if problem:
        return problem
    assert isinstance(path, str)
    if path.startswith("/"):
        return "is absolute"
    return _parts_problem(path.split("/"))


def absolute_path_problem(path: object) -> str | None:
    """Why ``path`` is not an absolute, normalised path (None when it is one)."""
    problem = _text_problem(path)
    if problem:
        return problem
    assert isinstance(path, str)
    if not path.startswith("/") or path == "/":
        return "is not an absolute path below /"
    return _parts_problem(path[1:].split("/"))


def unsafe_part(path: str) -> str | None:
    """The first part of an absolute path with characters other than letters, digits and
    ``._-+@`` (spaces, quotes, ``$``, backticks, ``;``, newlines …), or None."""
    for part in path.strip("/").split("/"):
        if not SAFE_PART.fullmatch(part):
            return part
    return None
