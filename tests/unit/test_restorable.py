"""The newest restorable instant of each database (services/operations/restorable.py): the
newest base that holds it, and each base's databases read once, whatever the number of
databases (the health check asks it for every database of every server each minute)."""

from __future__ import annotations

import json

from dbsafe.services.lifecycle import coverage
from dbsafe.services.operations import restorable


def _base(n: int, type: str, databases: list[str] | None) -> dict:
    return {"point_id": f"p{n}", "type": type, "end_time": f"2026-12-0{n}T00:00:00+00:00",
            "databases": None if databases is None else json.dumps(databases)}


def test_each_database_gets_the_newest_base_holding_it_and_bases_are_read_once(monkeypatch):
    lineage = [_base(1, "full", ["a", "b", "c"]), _base(2, "full", ["a"]),
               _base(3, "diff", ["a", "b"]), _base(4, "log", None),
               _base(5, "copy-only", ["c"])]
    reads: list[str] = []
    real = coverage.held
    monkeypatch.setattr(coverage, "held", lambda p: reads.append(p["point_id"]) or real(p))
    databases = ["a", "b", "c", "d"] + [f"x{i}" for i in range(50)]
    got = restorable.newest_instants(None, {"recovery_model": "SIMPLE"}, databases,
                                     lineage=lineage)
    bases = [p["point_id"] for p in lineage if p["type"] in restorable.BASE_TYPES]
    assert sorted(reads) == sorted(bases)  # once each, not once per database
    assert got["a"] == got["b"] == "2026-12-03T00:00:00+00:00"
    held_c = [p["end_time"] for p in lineage if p["point_id"] in bases
              and coverage.holds(p, ["c"])]
    assert got["c"] == max(held_c)
    assert got["d"] is None and got["x7"] is None  # held by no base
