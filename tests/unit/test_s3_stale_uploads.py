"""Which S3 multipart uploads belong to writers that are gone (``S3Storage.cleanup``)."""

from __future__ import annotations

import datetime as dt

from dbsafe.storage.s3 import _store_time, upload_is_stale

NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(hours=24)


def test_an_upload_with_a_recent_part_is_alive_however_old_its_start():
    # moto dates every upload 2010-11-10: its start says nothing
    started = dt.datetime(2010, 11, 10, 20, 48, 33, tzinfo=dt.UTC)
    assert not upload_is_stale(started, [started, NOW - dt.timedelta(seconds=1)], NOW)


def test_an_upload_without_parts_is_left():
    assert not upload_is_stale(NOW - 30 * DAY, [], NOW)


def test_old_start_and_old_parts_are_stale():
    assert upload_is_stale(NOW - 3 * DAY, [NOW - 2 * DAY, NOW - DAY - dt.timedelta(seconds=1)], NOW)


def test_a_recent_start_keeps_an_upload():
    assert not upload_is_stale(NOW - dt.timedelta(hours=1), [NOW - 2 * DAY], NOW)


def test_the_stores_clock_comes_from_its_date_header():
    reply = {"ResponseMetadata": {"HTTPHeaders": {"date": "Mon, 07 Dec 2026 12:00:00 GMT"}}}
    assert _store_time(reply) == NOW
    assert _store_time({"ResponseMetadata": {"HTTPHeaders": {}}}) is None
    assert _store_time({"ResponseMetadata": {"HTTPHeaders": {"date": "garbage"}}}) is None
