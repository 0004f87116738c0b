"""The catalog is an index of the vault: what it says about a point must be what the
manifest (the commit point) says, whether the backup wrote the row or a later listing
rebuilt it from the manifest."""

from __future__ import annotations

import sqlite3


def test_points_rebuilt_from_manifests_equal_the_original_rows(src_vault):
    full = src_vault.backup("src")
    copy = src_vault.backup("src", "--type", "copy-only")
    before = src_vault.points("src")
    assert [p["point_id"] for p in before] == [full["point_id"], copy["point_id"]]
    assert before[0]["bytes_stored"] == full["bytes_stored"]

    # As if the process had died between writing the manifest and the catalog row.
    db = sqlite3.connect(src_vault.path / "catalog.sqlite")
    with db:
        db.execute("DELETE FROM recovery_points")
    db.close()

    after = src_vault.points("src")
    assert [p["point_id"] for p in after] == [p["point_id"] for p in before]
    for old, new in zip(before, after, strict=True):
        differing = {k: (old[k], new[k]) for k in old if old[k] != new.get(k)}
        assert not differing, f"point {old['point_id']}: catalog row vs manifest {differing}"


def test_a_point_of_another_server_is_not_listed_but_restores(src_vault, source, area):
    from replicas import make_standby

    other = make_standby(source, area, "other")  # same cluster lineage, another server
    src_vault.add_server("other", other)
    point = src_vault.backup("src")["point_id"]
    assert [p["point_id"] for p in src_vault.points("src")] == [point]
    assert src_vault.points("other") == []
    # ...but it restores through any server of the same cluster lineage (after a failover
    # the new primary restores from the old primary's fulls)
    out = src_vault.ok("restore", "other", "--point", point, "--as-files",
                       src_vault.path.parent / "r")
    assert out["point_id"] == point
    src_vault.fail("point.unknown", "restore", "other", "--point", "20200101T000000Z-0",
                   "--to-pgdata", src_vault.path.parent / "r2")
    assert not (src_vault.path.parent / "r2").exists()


def test_points_come_back_when_a_removed_server_is_added_again(src_vault, source):
    point = src_vault.backup("src")["point_id"]
    assert src_vault.ok("server", "remove", "src") == {"removed": "src"}
    assert src_vault.ok("server", "list") == []
    assert (src_vault.path / "manifests" / point).exists()  # the vault keeps the point
    src_vault.add_server("src", source)
    assert [p["point_id"] for p in src_vault.points("src")] == [point]
