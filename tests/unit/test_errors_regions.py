"""The error registry (and docs/errors.md made from it) and region names."""

from __future__ import annotations

from pathlib import Path

import pytest

from dbsafe.core.errors import REGISTRY, DbsafeError, errors_markdown
from dbsafe.core.regions import check_region

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_errors_doc_equals_the_registry():
    assert (DOCS / "errors.md").read_text() == errors_markdown(), \
        "docs/errors.md is stale: regenerate it from dbsafe.core.errors.errors_markdown()"


def test_every_error_code_is_well_formed():
    for code, spec in REGISTRY.items():
        assert spec.code == code
        assert spec.exit_status != 0, code
        assert 400 <= spec.http_status < 600, code
        assert code == code.lower() and " " not in code, code


def test_error_message_is_filled_in():
    err = DbsafeError("server.wrong_port", pgdata="/x", actual=5433, given=5432)
    assert err.message == ("the cluster in /x listens on port 5433, not 5432; "
                           "use --port 5433")
    assert err.exit_status == REGISTRY["server.wrong_port"].exit_status
    assert err.as_dict()["details"] == {"pgdata": "/x", "actual": "5433", "given": "5432"}


@pytest.mark.parametrize("text, name", [
    ("West Europe", "West Europe"), ("west   europe", "West Europe"),
    ("NE", "North Europe"), ("eus2", "East US 2"), ("wus 2", "West US 2"),
    ("WUS2", "West US 2"), ("Australia Central 2", "Australia Central 2"),
])
def test_region_names_and_abbreviations(text, name):
    assert check_region(text) == name


def test_unknown_region():
    with pytest.raises(DbsafeError) as exc:
        check_region("Mars North")
    assert exc.value.code == "region.unknown"
    assert "West Europe" in exc.value.message


def test_an_abbreviation_of_two_regions_names_neither():
    """The support matrix gives AC to Australia Central and to Australia Central 2."""
    with pytest.raises(DbsafeError) as exc:
        check_region("ac")
    assert exc.value.code == "region.ambiguous"
    assert "Australia Central 2" in exc.value.message
