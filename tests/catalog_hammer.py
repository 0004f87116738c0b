"""A process that uses a catalog as an agent would, for the concurrency tests.

    python catalog_hammer.py SPEC HOME work WORKER ROUNDS   write, print a JSON summary
    python catalog_hammer.py SPEC HOME open                 on a line from stdin, open
    python catalog_hammer.py SPEC HOME hold NAME            hold exclusive(NAME) until EOF

``work`` runs two threads (the services call the catalog from several), each writing rows
of its own (servers, points) and racing the other processes on shared rows: the server
``shared`` (made by the test), its points, its job slot (a conflicting job at a time), its
schedule state, its database list, one alert, one policy name and the same WAL files.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path

from dbsafe.catalog import open_catalog

INSTANCE = {"pgdata": "/nowhere", "port": 1, "bin_dir": "/usr/lib/postgresql/15/bin",
            "pg_version": 15, "system_identifier": "7", "data_checksums": True}


def point(point_id: str) -> dict:
    return {"point_id": point_id, "type": "full", "copy_only": 0,
            "start_time": "2026-01-01T00:00:00Z", "end_time": "2026-01-01T00:01:00Z",
            "start_lsn": "0/1", "stop_lsn": "0/2", "timeline": 1, "bytes_read": 1,
            "bytes_stored": 1, "corrupt_pages": 0}


def work(catalog, me: str, rounds: int, out: dict) -> None:
    shared = catalog.get_server("shared")["instance_id"]
    for i in range(rounds):
        own = catalog.add_server(f"{me}-s{i}", "host", None, INSTANCE)
        catalog.add_point(own, point(f"{me}-p{i}"))
        catalog.add_point(shared, point(f"shared-p{i}"))  # every worker adds it
        catalog.protect_items(shared, [(f"{me}-db{i}", None)], "nightly")
        job = f"{me}-j{i}"
        if catalog.create_job(job, "backup", "shared", os.getpid(), f"2026-01-01T{i:06d}",
                              conflicts=("full",), backup_type="full") is None:
            out["jobs"] += 1
            running = catalog.list_jobs(1000, server="shared", state="running")
            if [r["id"] for r in running] != [job]:
                out["overlaps"] += 1
            catalog.update_job(job, state="completed", cancel_requested=False)
        catalog.claim_slot(shared, "nightly", "full", f"{me}-{i}", i + 1)
        catalog.set_slot_job(shared, "nightly", "full", job)
        catalog.replace_databases(shared, [
            {"name": "app", "oid": 16384, "size_bytes": 5 << 32, "file_count": 3,
             "read_only": False, "kind": "user"},
            {"name": "postgres", "oid": 5, "size_bytes": 1, "file_count": 1,
             "read_only": False, "kind": "system"}])
        catalog.upsert_alert({"kind": "backup-failed", "severity": "critical",
                              "message": f"from {me}"}, f"2026-01-01T{i:06d}")
        out["policies"] += catalog.insert_policy(f"policy-{i}", "{}", "2026-01-01")
        catalog.add_wal_file({"system_identifier": "7", "name": f"{i:024X}", "timeline": 1,
                              "segno": i, "size": 16, "mtime": 1.7e9 + i / 1000,
                              "archived": "2026-01-01", "server": me})


def main(spec: str, home: str, mode: str, *args: str) -> None:
    if mode == "open":
        sys.stdin.readline()  # every opener starts together
        catalog = open_catalog(spec, Path(home))
        print(json.dumps(catalog.describe()), flush=True)
    elif mode == "hold":
        catalog = open_catalog(spec, Path(home))
        with catalog.exclusive(args[0]):
            print("held", flush=True)
            sys.stdin.read()
    else:
        worker, rounds = args[0], int(args[1])
        catalog = open_catalog(spec, Path(home))
        outs = [{"jobs": 0, "overlaps": 0, "policies": 0} for _ in range(2)]
        errors: list[str] = []

        def thread(n: int) -> None:
            try:
                work(catalog, f"w{worker}.{n}", rounds, outs[n])
            except Exception as exc:  # reported: the test fails on it
                errors.append(f"{type(exc).__name__}: {exc}")
        threads = [threading.Thread(target=thread, args=(n,)) for n in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print(json.dumps({k: sum(o[k] for o in outs) for k in outs[0]} | {"errors": errors}),
              flush=True)
    catalog.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
