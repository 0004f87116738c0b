"""A data page whose checksum fails is reported by the backup (which still completes)."""

from __future__ import annotations

from conftest import make_vault, new_cluster

from dbsafe.engines.postgres.pages import PAGE_SIZE, bad_pages


def test_backup_reports_a_corrupt_page(pg_template, area, cli_env):
    pg = new_cluster(pg_template, area, "bad")
    pg.execute("CREATE TABLE victim (id int, pad text) WITH (autovacuum_enabled = off)")
    pg.execute("INSERT INTO victim SELECT g, repeat(md5(g::text), 3) "
               "FROM generate_series(1, 2000) g")
    pg.execute("VACUUM FREEZE victim")  # hint bits set now: later reads dirty nothing
    pg.execute("CHECKPOINT")
    path = pg.relation_path("victim")
    rel = path.relative_to(pg.pgdata).as_posix()
    assert path.stat().st_size >= 4 * PAGE_SIZE
    pg.stop()

    with open(path, "r+b") as f:
        f.seek(2 * PAGE_SIZE + 4000)
        old = f.read(11)
        f.seek(2 * PAGE_SIZE + 4000)
        f.write(bytes(b ^ 0x5A for b in old))
    data = path.read_bytes()
    assert bad_pages(data, 0) == [2]  # the damage is what we meant, and only that

    pg.start()  # and nothing reads the table before the backup does
    vault = make_vault(cli_env, area / "vault")
    vault.add_server("bad", pg)
    result = vault.backup("bad")
    assert result["corrupt_pages"] >= 1, result
    assert {"path": rel, "block": 2} in result["corrupt_page_list"], result["corrupt_page_list"]
    assert all(c["path"] == rel for c in result["corrupt_page_list"])

    jobs = {j["id"]: j for j in vault.jobs()}
    assert jobs[result["job_id"]]["state"] == "completed_with_warnings"
    (point,) = vault.points("bad")
    assert point["corrupt_pages"] == result["corrupt_pages"]
    manifest = vault.repository().load_manifest_whole(result["point_id"])
    assert {"path": rel, "block": 2} in manifest["corrupt_pages"]

    # The backup copies the page as it is: the restore gets the same (damaged) bytes.
    entry = next(f for f in manifest["files"] if f["path"] == rel)
    assert entry["size"] == len(data)
    repo = vault.repository()
    copied = b"".join(repo.read_block(bytes.fromhex(b)) for b in entry["blocks"])
    assert copied == data
