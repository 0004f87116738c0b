"""Bounded fields of a request, as pydantic types: what every interface accepts for a
name, a database name or a folder on the dbsafe host (core/bounds.py has the bounds). The
API's bodies and the services' request types share them, so a name with a control
character or a 1 MB string is refused before it reaches the catalog or the file system."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

from dbsafe.core import bounds

# A server, replica set or policy name: what the CLI takes.
Name = Annotated[str, Field(min_length=1, max_length=bounds.NAME_MAX,
                            pattern=bounds.NAME_PATTERN)]
# A PostgreSQL database name (identifiers: at most 63 bytes).
Database = Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[^\x00-\x1f]+$")]


def _short_parts(path: str) -> str:
    if any(len(part.encode()) > 255 for part in path.split("/")):
        raise ValueError("a part of the path is longer than 255 bytes")
    return path


# An absolute path on the dbsafe host, no part of it over the file systems' 255 bytes (a
# longer one is an OSError, not an answer).
Folder = Annotated[str, Field(min_length=1, max_length=4096,
                              pattern=r"^(/|(/[^/\x00]{1,255})+/?)$"),
                   AfterValidator(_short_parts)]
