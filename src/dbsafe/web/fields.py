"""Bounded request fields the endpoints share: names, folders and ids as the service layer
accepts them. Bounds are checked before any endpoint runs (422 ``request.invalid``), so a
name with a control character or a 1 MB string never reaches the catalog or the file
system."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path as PathParam
from fastapi import Query
from pydantic import AfterValidator, Field

from dbsafe.core import bounds

# A server, replica set or policy name: what the CLI takes (core/bounds.py).
Name = Annotated[str, Field(min_length=1, max_length=bounds.NAME_MAX,
                            pattern=bounds.NAME_PATTERN)]
# A PostgreSQL database name (identifiers: at most 63 bytes).
Database = Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[^\x00-\x1f]+$")]
# An absolute path on the dbsafe host, no part of it over the file systems' 255 bytes (a
# longer one is an OSError, not an answer).
def _short_parts(path: str) -> str:
    if any(len(part.encode()) > 255 for part in path.split("/")):
        raise ValueError("a part of the path is longer than 255 bytes")
    return path


Folder = Annotated[str, Field(min_length=1, max_length=4096,
                              pattern=r"^(/|(/[^/\x00]{1,255})+/?)$"),
                   AfterValidator(_short_parts)]
# Catalog row ids (alerts, channels): SQLite integers.
RowId = Annotated[int, PathParam(ge=bounds.ROW_ID[0], le=bounds.ROW_ID[1])]
PointId = Annotated[str, PathParam(min_length=1, max_length=100,
                                   pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")]
# Where a page of a list starts. Every integer the API takes has both bounds (a unit test
# walks the OpenAPI document): an offset of 2**90 is a 422, not a 500 from the JSON encoder
# or the database driver.
MAX_OFFSET = 10**9
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="rows to skip")]
# How many rows of a list (jobs, drills, audit): what the CLI's --limit takes.
Limit = Annotated[int, Query(ge=bounds.LIST_LIMIT[0], le=bounds.LIST_LIMIT[1],
                             description="rows at most")]
# A port to reach a server on, to serve on, of an SMTP server.
Port = Annotated[int, Field(ge=bounds.PORT[0], le=bounds.PORT[1])]
