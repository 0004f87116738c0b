"""Where the version matrix's PostgreSQL programs live (scripts/install.sh --test puts them
there, tests/integration/test_version_matrix.py runs them): ``$DBSAFE_TEST_PG_DIR``, else
``tools/pg`` of this clone when every folder of its path is root's alone, else
``/opt/dbsafe-test/pg``. dbsafe runs programs only from such folders
(``cluster.trusted_bin_dir``), and a clone may sit below a folder others can write (/tmp).

``python tests/pg_matrix.py`` prints it (for install.sh)."""

from __future__ import annotations

import os
from pathlib import Path

from dbsafe.core.errors import DbsafeError
from dbsafe.engines.postgres.cluster import trusted_bin_dir

REPO = Path(__file__).resolve().parents[1]
OUTSIDE_THE_CLONE = Path("/opt/dbsafe-test/pg")


def matrix_dir() -> Path:
    given = os.environ.get("DBSAFE_TEST_PG_DIR")
    if given:
        return Path(given)
    try:
        trusted_bin_dir(str(REPO))
    except DbsafeError:
        return OUTSIDE_THE_CLONE
    return REPO / "tools" / "pg"


if __name__ == "__main__":
    print(matrix_dir())
