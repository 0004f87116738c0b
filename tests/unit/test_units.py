"""How sizes and durations read (core/units.py): the portal's job lists and the services'
messages print them this one way."""

from __future__ import annotations

from dbsafe.core.units import duration_text, size_text


def test_sizes_take_the_unit_that_keeps_them_short():
    assert size_text(0) == "0 B"
    assert size_text(1023) == "1023 B"
    assert size_text(4096) == "4 KiB"
    assert size_text(3 << 20) == "3 MiB"
    assert size_text(int(1.5 * (1 << 30))) == "1.5 GiB"


def test_durations_say_seconds_minutes_or_hours():
    assert duration_text(0.42) == "0.4 s"
    assert duration_text(12.4) == "12 s"
    assert duration_text(185) == "3 min 05 s"
    assert duration_text(3725) == "1 h 02 min"
