"""The rules a manifest must keep before anything is restored from it (vault/manifest_rules.py
and engines/postgres/layout_rules.py, joined by services/lifecycle/manifest_checks.py): each forged
entry is refused with vault.manifest_invalid naming the entry and the rule."""

from __future__ import annotations

import copy

import pytest

from dbsafe.core.errors import DbsafeError
from dbsafe.services.lifecycle.manifest_checks import check_wal_names, checked

BS = 1 << 20
ID = "ab" * 32
SEGMENT = "000000010000000000000007"


def _file(path: str, size: int = 8192, mode: int = 0o600) -> dict:
    return {"path": path, "size": size, "mode": mode, "mtime": 1.0,
            "blocks": [ID] * -(-size // BS), "checksum": "00"}


def _manifest() -> dict:
    """A manifest as a backup of a cluster with one tablespace writes it."""
    return {
        "point_id": "20260101T000000Z-0123abcd", "type": "full", "block_size": BS,
        "instance": {"server": "s", "system_identifier": "1", "pg_version": 15,
                     "pgdata": "/srv/pg", "owner": "postgres"},
        "tablespaces": [{"oid": "16390", "location": "/srv/ts1"}],
        "dirs": [{"path": "base", "mode": 0o700, "type": "dir"},
                 {"path": "base/1", "mode": 0o700, "type": "dir"},
                 {"path": "global", "mode": 0o700, "type": "dir"},
                 {"path": "pg_wal", "mode": 0o700, "type": "dir"},
                 {"path": "pg_tblspc", "mode": 0o700, "type": "dir"},
                 {"path": "pg_tblspc/16390", "mode": 0o700, "type": "tablespace"},
                 {"path": "pg_tblspc/16390/PG_15_202209061", "mode": 0o700, "type": "dir"},
                 {"path": "pg_tblspc/16390/PG_15_202209061/5", "mode": 0o700, "type": "dir"},
                 {"path": "log", "mode": 0o750, "type": "dir"}],
        "files": [_file("PG_VERSION", 3), _file("postgresql.conf", 30000, 0o644),
                  _file("global/pg_control"), _file("global/1262"),
                  _file("base/1/1259", 3 * BS + 5),
                  _file("pg_tblspc/16390/PG_15_202209061/5/16400"),
                  _file("log/postgresql.log", 10, 0o640),
                  {**_file("base/1/2608", 4 * 8192),
                   "delta": {"pages": [[0, 1], [2, 2]], "block_pages": [3]}},
                  {**_file("base/1/PG_VERSION", 3), "blocks": [],  # unchanged since the base
                   "delta": {"pages": [], "block_pages": []}},
                  # a synthetic full's: its read block, then two layers (the older one's
                  # page 5 lies past the file, cut since)
                  {**_file("base/1/2609", 3 * 8192), "blocks": [ID] * 3,
                   "layers": [{"pages": [[1, 1], [5, 1]], "block_pages": [2]},
                              {"pages": [[0, 2]], "block_pages": [2]}]}],
        "skipped": [{"path": "base/1/99999", "size": 8192, "mode": 0o600}],
        "wal": [_file(SEGMENT, 16 << 20)],
    }


def test_a_real_shaped_manifest_passes():
    manifest = _manifest()
    assert checked(copy.deepcopy(manifest), "p") == manifest


FORGED = [
    # (what is changed, a part of the refusal's message)
    (lambda m: m["files"][4].update(path="../x"), "'..'"),
    (lambda m: m["files"][4].update(path="base/1/../../../x"), "'..'"),
    (lambda m: m["files"][4].update(path="/etc/cron.d/x"), "absolute"),
    (lambda m: m["files"][4].update(path="pg_tblspc/../x"), "'..'"),
    (lambda m: m["files"][4].update(path="base//1"), "empty"),
    (lambda m: m["files"][4].update(path="base/./1"), "'.'"),
    (lambda m: m["files"][4].update(path="base\\1\\x"), "backslash"),
    (lambda m: m["files"][4].update(path="base/1/x\x00y"), "control"),
    (lambda m: m["files"][4].update(path="base/1/a\nb"), "control"),
    (lambda m: m["files"][4].update(path="base/1/" + "x" * 300), "longer than 255"),
    (lambda m: m["files"][4].update(path=7), "not a non-empty string"),
    (lambda m: m["files"][1].update(mode=0o4755), "setuid"),
    (lambda m: m["files"][1].update(mode=0o2750), "setuid"),
    (lambda m: m["files"][1].update(mode=-1), "setuid"),
    (lambda m: m["dirs"].append({"path": "/etc", "mode": 0o777, "type": "dir"}), "absolute"),
    (lambda m: m["dirs"][8].update(mode=0o1777), "setuid"),
    (lambda m: m["dirs"].append({"path": "x", "mode": 0o700, "type": "link"}), "type"),
    (lambda m: m["skipped"][0].update(path="../../x"), "'..'"),
    (lambda m: m["wal"][0].update(path="../" + SEGMENT), "'..'"),
    (lambda m: m["wal"][0].update(path="archive/" + SEGMENT), "folder"),
    (lambda m: m["wal"][0].update(path="passwd"), "not a WAL file name"),
    (lambda m: m["wal"].append(_file(SEGMENT, 16 << 20)), "twice"),
    (lambda m: m["tablespaces"][0].update(oid="16390/../../x"), "digits only"),
    (lambda m: m["tablespaces"][0].update(oid="0"), "digits only"),
    (lambda m: m["tablespaces"][0].update(location="srv/ts1"), "absolute"),
    (lambda m: m["tablespaces"][0].update(location="/srv/../etc"), "'..'"),
    (lambda m: m["tablespaces"].append({"oid": "16390", "location": "/x"}), "twice"),
    (lambda m: m["files"].append(_file("pg_tblspc/16391/PG_15_1/5/1")), "does not list"),
    (lambda m: m["files"].append(_file("pg_tblspc/16390/PG_14_1/5/1")), "PG_15_"),
    (lambda m: m["files"].append(_file("pg_tblspc/16390/x")), "PG_15_"),
    (lambda m: m["files"].append(_file("pg_tblspc/16390")), "twice"),
    (lambda m: m["dirs"].__setitem__(5, {**m["dirs"][5], "type": "dir"}),
     "replaces a tablespace link"),
    (lambda m: m["dirs"].append({"path": "pg_tblspc/16390/PG_15_1/5/x", "mode": 0o700,
                                 "type": "dir"}), "<database oid>/<file>"),
    (lambda m: m["dirs"].append({"path": "base/x", "mode": 0o700, "type": "dir"}),
     "base/<database oid>"),
    (lambda m: m["files"].append(_file("base/1/2/3")), "base/<database oid>"),
    (lambda m: m["files"].append(_file("global/x/y")), "global/<file>"),
    (lambda m: m["dirs"].append({"path": "log2", "mode": 0o700, "type": "tablespace"}),
     "outside pg_tblspc"),
    (lambda m: m["files"].append(_file("backup_label")), "never holds"),
    (lambda m: m["files"].append(_file("standby.signal")), "never holds"),
    (lambda m: m["files"][2].update(size=16384, blocks=[ID]), "control file"),
    (lambda m: m["files"].append(_file("base/1/1259")), "twice"),
    (lambda m: m["files"].append(_file("PG_VERSION/x")), "which is a file"),
    (lambda m: m["files"][4].update(blocks=[ID]), "block count"),
    (lambda m: m["files"][4].update(size=-1), "size"),
    (lambda m: m["files"][7]["delta"].update(pages=[[2, 2], [0, 1]]), "sorted"),
    (lambda m: m["files"][7]["delta"].update(pages=[[0, 1], [3, 2]]), "past the end"),
    (lambda m: m["files"][7]["delta"].update(block_pages=[2]), "do not hold"),
    (lambda m: m["files"][7]["delta"].update(block_pages=[200]), "do not hold"),
    (lambda m: m["files"][7].update(size=3 * 8192 + 1), "past the end"),
    (lambda m: m["files"][7].update(delta=[]), "not an object"),
    (lambda m: m.update(files="base/1/1259"), "not a list"),
    (lambda m: m["files"][9].update(layers={}), "not a list"),
    (lambda m: m["files"][9]["layers"][1].update(pages=[[1, 1], [0, 1]]), "sorted"),
    (lambda m: m["files"][9]["layers"][0].update(block_pages=[1]), "do not hold"),
    (lambda m: m["files"][9]["layers"].append([]), "not an object"),
    (lambda m: m["files"][9].update(blocks=[ID] * 4), "more read blocks"),
    (lambda m: m["files"][9].update(blocks=[ID]), "do not hold"),
    (lambda m: m["files"][9].update(delta={"pages": [], "block_pages": []}), "both"),
    (lambda m: m["wal"][0].update(layers=[]), "delta or layers"),
    (lambda m: m["files"][4].update(blocks=["zz" * 32] * 4), "64 hex digits"),
    (lambda m: m["files"][4].update(blocks=[ID[:-2]] * 4), "64 hex digits"),
    (lambda m: m.update(base="../config"), "not a point id"),
    (lambda m: m.update(base="20260101T000000Z-0123abcd/../../x"), "not a point id"),
]


@pytest.mark.parametrize("forge,says", FORGED)
def test_a_forged_entry_is_refused_naming_it(forge, says):
    manifest = _manifest()
    forge(manifest)
    with pytest.raises(DbsafeError) as caught:
        checked(manifest, "20260101T000000Z-0123abcd")
    assert caught.value.code == "vault.manifest_invalid"
    assert "20260101T000000Z-0123abcd" in caught.value.message
    assert says in caught.value.message, caught.value.message


def test_staged_wal_names_follow_postgresql():
    check_wal_names([SEGMENT, f"{SEGMENT}.partial", "00000002.history",
                     f"{SEGMENT}.00000028.backup"], "plan")
    for name in ("../000000010000000000000007", "00000001.history/../../x", "",
                 "000000010000000000000007\n"):
        with pytest.raises(DbsafeError) as caught:
            check_wal_names([name], "plan")
        assert caught.value.code == "vault.manifest_invalid"
