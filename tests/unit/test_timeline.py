"""The restore timeline's geometry (portal/timeline.py): marks, the log band, gaps, ticks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dbsafe.portal import timeline

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def _t(hours_ago: float) -> str:
    return (NOW - timedelta(hours=hours_ago)).isoformat(timespec="milliseconds")


def _point(pid: str, type_: str, hours_ago: float, copy_only: bool = False) -> dict:
    return {"point_id": pid, "type": type_, "copy_only": copy_only,
            "start_time": _t(hours_ago + 0.1), "end_time": _t(hours_ago)}


def test_marks_one_per_backup_and_none_per_log_point():
    name, start, end = timeline.window("24h", NOW)
    points = [_point("f1", "full", 20), _point("d1", "diff", 10),
              _point("c1", "copy-only", 5)] + \
        [_point(f"l{i}", "log", i / 4) for i in range(80)]
    tl = timeline.build(points, [], [], start, end)
    assert name == "24h"
    assert [(m.kind, m.point_id) for m in tl.marks] == [("full", "f1"), ("diff", "d1"),
                                                        ("copy-only", "c1")]
    # 20 hours ago in a 24-hour window of 1000 units: at 4/24 of the width
    assert tl.marks[0].x == round(4 / 24 * timeline.WIDTH, 2)
    assert tl.marks[2].x == round(19 / 24 * timeline.WIDTH, 2)
    assert "f1" in tl.marks[0].title and tl.marks[0].start.endswith("Z")


def test_points_outside_the_window_are_counted_not_drawn():
    _, start, end = timeline.window("7d", NOW)
    points = [_point("old", "full", 24 * 8), _point("new", "full", 24)]
    tl = timeline.build(points, [], [], start, end)
    assert [m.point_id for m in tl.marks] == ["new"] and tl.hidden == 1


def test_band_is_clipped_to_the_window():
    _, start, end = timeline.window("24h", NOW)
    ranges = [{"timeline": 1, "start_time": _t(48), "end_time": _t(6),
               "start_lsn": "0/1", "end_lsn": "0/2"}]
    tl = timeline.build([], ranges, [], start, end)
    (band,) = tl.bands
    assert band.x == 0 and band.width == round(18 / 24 * timeline.WIDTH, 2)
    # the band's instants are those of the visible part: what a click can pick
    assert band.start == timeline.iso(start) and band.end == timeline.iso(NOW - timedelta(hours=6))


def test_a_short_range_stays_visible_and_a_range_outside_is_dropped():
    _, start, end = timeline.window("90d", NOW)
    ranges = [{"timeline": 1, "start_time": _t(1), "end_time": _t(0.99)},
              {"timeline": 1, "start_time": _t(24 * 100), "end_time": _t(24 * 95)}]
    tl = timeline.build([], ranges, [], start, end)
    (band,) = tl.bands
    assert band.width == timeline.MIN_WIDTH and band.x + band.width <= timeline.WIDTH


def test_gaps_are_drawn_even_with_one_side_unknown():
    _, start, end = timeline.window("24h", NOW)
    gaps = [{"timeline": 1, "start_time": _t(12), "end_time": _t(11), "missing_segments": 3,
             "first_missing": "000000010000000000000007", "start_lsn": "0/7000000",
             "end_lsn": "0/A000000"},
            {"timeline": 2, "start_time": _t(3), "end_time": None, "missing_segments": 1,
             "first_missing": "00000002000000000000000B", "start_lsn": "0/B000000",
             "end_lsn": "0/C000000"},
            {"timeline": 2, "start_time": None, "end_time": None, "missing_segments": 1,
             "first_missing": "x", "start_lsn": "0/0", "end_lsn": "0/0"}]
    tl = timeline.build([], [], gaps, start, end)
    assert len(tl.gaps) == 2
    assert "3 WAL segment(s) missing" in tl.gaps[0].title
    assert tl.gaps[0].width == round(timeline.WIDTH / 24, 2)
    assert tl.gaps[1].width == timeline.MIN_WIDTH


def test_ninety_days_of_points_make_a_readable_picture():
    """Daily fulls, 15-minute logs for 90 days: 90 marks, one band, a dozen week ticks."""
    _, start, end = timeline.window("90d", NOW)
    points = [_point(f"f{d}", "full", 24 * d + 1) for d in range(90)]
    points += [_point(f"l{i}", "log", i / 4) for i in range(90 * 96)]
    ranges = [{"timeline": 1, "start_time": _t(24 * 89 + 1), "end_time": _t(0.1)}]
    tl = timeline.build(points, ranges, [], start, end)
    assert len(tl.marks) == 90 and len(tl.bands) == 1
    assert 10 <= len(tl.ticks) <= timeline.MAX_TICKS
    assert all(datetime.fromisoformat(t.start.replace("Z", "+00:00")).weekday() == 0
               for t in tl.ticks)


def test_ticks_fit_each_window_on_round_instants():
    for name in timeline.WINDOWS:
        _, start, end = timeline.window(name, NOW + timedelta(minutes=7))
        ticks = timeline.ticks(start, end, timeline.WIDTH)
        assert 3 <= len(ticks) <= timeline.MAX_TICKS, name
        xs = [t.x for t in ticks]
        assert xs == sorted(xs) and xs[0] >= 0 and xs[-1] <= timeline.WIDTH
        instants = [datetime.fromisoformat(t.start.replace("Z", "+00:00")) for t in ticks]
        steps = {b - a for a, b in zip(instants, instants[1:], strict=False)}
        assert len(steps) == 1, name                       # evenly spaced
        step = steps.pop()
        if step < timedelta(days=1):                       # on round instants of the step
            assert all((t - t.replace(hour=0, minute=0, second=0)) % step == timedelta(0)
                       for t in instants), name
    _, start, end = timeline.window("14d", NOW)
    labels = [t.title for t in timeline.ticks(start, end, timeline.WIDTH)]
    assert labels[0] == "Thu 12 Nov" and len(labels) == 14


def test_unknown_window_falls_back_to_the_default():
    name, start, end = timeline.window("5y", NOW)
    assert name == timeline.DEFAULT_WINDOW and end - start == timedelta(days=14)


def test_windows_below_an_hour_and_around_a_picked_instant():
    """The timeline zooms to 15 and 5 minutes (ticks every minute or 30 seconds, labelled
    to the second), around an instant picked on it, never past now."""
    picked = NOW - timedelta(hours=3)
    name, start, end = timeline.window("5m", NOW, around=picked)
    assert (name, start, end) == ("5m", picked - timedelta(seconds=150),
                                  picked + timedelta(seconds=150))
    labels = [t.title for t in timeline.ticks(start, end, timeline.WIDTH)]
    assert len(labels) == 11 and all(len(label) == 8 for label in labels)   # HH:MM:SS
    _, start, end = timeline.window("15m", NOW, around=NOW - timedelta(minutes=1))
    assert end == NOW and start == NOW - timedelta(minutes=15)


def test_marks_close_together_step_into_lanes_to_stay_reachable():
    """Fulls seconds apart in a 14-day window would sit on one another: each steps into
    the next lane (three at most); a differential's row has lanes of its own."""
    _, start, end = timeline.window("14d", NOW)
    points = [_point(f"p{n}", "full", 48 - n / 3600) for n in range(4)] + \
        [_point("d0", "diff", 48), _point("far", "full", 48 + 5 * 24)]
    tl = timeline.build(points, [], [], start, end)
    lanes = {m.point_id: m.lane for m in tl.marks}
    assert [lanes[f"p{n}"] for n in range(4)] == [0, 1, 2, 0]
    assert lanes["d0"] == 0 and lanes["far"] == 0


def test_the_axis_is_in_the_viewers_zone():
    """Ticks round in the viewer's zone, labelled in its wall time, placed at their
    instants: midnight in Berlin is 23:00 UTC the day before (in November)."""
    from zoneinfo import ZoneInfo

    berlin = ZoneInfo("Europe/Berlin")
    _, start, end = timeline.window("14d", NOW)
    utc = timeline.ticks(start, end, timeline.WIDTH)
    local = timeline.ticks(start, end, timeline.WIDTH, berlin)
    assert [t.title for t in local] == [t.title for t in utc]  # days in both
    first = datetime.fromisoformat(local[0].start.replace("Z", "+00:00"))
    assert first.astimezone(berlin).hour == 0 and first.hour == 23
    assert local[0].x < utc[0].x  # an hour earlier on the axis
    _, start, end = timeline.window("15m", NOW, around=NOW - timedelta(hours=2))
    kolkata = timeline.ticks(start, end, timeline.WIDTH, ZoneInfo("Asia/Kolkata"))
    shown = [datetime.fromisoformat(t.start.replace("Z", "+00:00")).astimezone(
        ZoneInfo("Asia/Kolkata")).strftime("%H:%M") for t in kolkata]
    assert [t.title for t in kolkata] == shown  # the labels are the zone's wall time
