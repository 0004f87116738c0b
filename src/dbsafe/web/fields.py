"""Bounded request fields the endpoints share: ids, pages and ports (names, database names
and folders are core/fields.py's, shared with the services' request types). Bounds are
checked before any endpoint runs (422 ``request.invalid``), so a 1 MB string or an offset
of 2**90 never reaches the catalog."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path as PathParam
from fastapi import Query
from pydantic import Field

from dbsafe.core import bounds

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
