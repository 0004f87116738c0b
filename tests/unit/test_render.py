"""What people read: ids whole in narrow tables, no Python reprs, typed text never taken
for Rich markup (cli/render.py)."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from dbsafe.cli import render


@pytest.fixture
def printed(monkeypatch) -> io.StringIO:
    buffer = io.StringIO()
    monkeypatch.setattr(render.out, "_made", Console(file=buffer, width=60, highlight=False,
                                                     soft_wrap=True))
    return buffer


def test_ids_are_never_shortened_in_a_narrow_table(printed):
    job = "20261206T221337Z-4f1c2a9be0d3aa17"
    rows = [{"id": job, "server": "a-server-with-a-long-name", "state": "completed",
             "message": "a long message " * 6}]
    render.table(rows, ["id", "server", "state", "message"])
    shown = printed.getvalue()
    assert job in shown, shown
    assert "…" not in shown


def test_fields_show_values_as_text(printed):
    render.fields({"id": "j1", "result": {"point_id": "p1", "copy_only": False, "base": None,
                                          "warnings": [{"code": "w.x", "message": "m"}]},
                   "error": None, "items": ["db1", "db2"]})
    shown = printed.getvalue()
    assert "None" not in shown and "{'" not in shown and "['" not in shown, shown
    assert "copy_only: no" in shown and "items: db1, db2" in shown, shown
    assert "  point_id: p1" in shown and "- code=w.x, message=m" in shown, shown
    assert "error: -" in shown, shown


def test_typed_text_is_not_markup(printed):
    render.table([{"id": "1", "name": "[red]x[/red]"}], ["id", "name"])
    render.fields({"note": "[bold]y[/bold]"})
    shown = printed.getvalue()
    assert "[red]x[/red]" in shown and "[bold]y[/bold]" in shown, shown


def test_instants_are_shown_one_way_with_their_zone(printed):
    """The CLI shows a recorded instant as the portal does (core/stamps.py): to the second,
    in UTC, saying so; a single record adds how long ago. Other values stay as they are."""
    render.table([{"id": "j1", "start_time": "2026-12-06T22:19:47.798+00:00",
                   "end_time": None}], ["id", "start_time", "end_time"])
    render.fields({"created": "2026-12-06T21:19:47+01:00", "last_seen": "not a time",
                   "seconds": 1.5})
    shown = printed.getvalue()
    assert "2026-12-06 22:19:47 UTC" in shown and ".798" not in shown, shown
    assert "created: 2026-12-06 20:19:47 UTC (" in shown and " ago)" in shown, shown
    assert "last_seen: not a time" in shown and "seconds: 1.5" in shown, shown


def test_a_drills_start_and_an_items_protection_are_instants_too():
    """`dbsafe drills` and `dbsafe report` (started, finished), `dbsafe items` (since)."""
    for key, value, shown in (("started", "2026-12-06T22:19:47.100+00:00",
                               "2026-12-06 22:19:47 UTC"),
                              ("finished", "2026-12-06T23:20:01+01:00",
                               "2026-12-06 22:20:01 UTC"),
                              ("since", "2026-12-01T08:00:00+00:00",
                               "2026-12-01 08:00:00 UTC"),
                              ("discovered", "2026-12-01T08:00:00+00:00",
                               "2026-12-01 08:00:00 UTC")):
        assert render.cell(key, value) == shown
