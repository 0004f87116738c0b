"""A failed job keeps what its work found (``exc.report``: a verify's damaged blocks, a
drill's checks) as its result, so that the caller of a job an agent ran gets the report a
run here prints (services/fleet/dispatch.py ``follow``); one too long is kept as its size."""

from __future__ import annotations

import json

import pytest

from dbsafe.catalog.sqlite import SqliteCatalog
from dbsafe.core.errors import DbsafeError
from dbsafe.services.activity.jobs import MAX_KEPT_REPORT, Job


@pytest.fixture
def catalog(tmp_path):
    catalog = SqliteCatalog(tmp_path / "catalog.db")
    yield catalog
    catalog.close()


def _failed(catalog, report: object) -> dict:
    error = DbsafeError("verify.failed", point_id="p1", problems=1, files=1)
    error.report = report
    with pytest.raises(DbsafeError), Job(catalog, "verify", None) as job:
        raise error
    row = catalog.get_job(job.id)
    assert (row["state"], row["error_code"]) == ("failed", "verify.failed")
    return row


def test_a_failed_jobs_report_is_its_result(catalog):
    report = {"server": "db1", "ok": False, "points": [{"point_id": "p1", "ok": False}]}
    assert json.loads(_failed(catalog, report)["result"]) == report


def test_a_report_too_long_is_kept_as_its_size_and_none_is_kept_as_nothing(catalog):
    huge = {"points": [{"problem": "x" * 1000} for _ in range(MAX_KEPT_REPORT // 1000 + 1)]}
    kept = json.loads(_failed(catalog, huge)["result"])
    assert list(kept) == ["report_omitted"] and str(MAX_KEPT_REPORT) in kept["report_omitted"]
    assert _failed(catalog, None)["result"] is None
