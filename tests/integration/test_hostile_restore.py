"""Restores from a hostile vault and into hostile places: nothing outside the target changes.

In a plain vault anyone who can write the storage can forge a manifest (the keyed hash's
key is in ``config``). Forged from a real point's manifest with the repository's own API,
manifests with ``../`` paths, absolute paths, ``pg_tblspc/../`` paths, absolute ``dirs``,
setuid modes, ``../`` WAL names and evil tablespaces are refused by ``dbsafe restore``
(``--to-pgdata`` and ``--as-files``), ``dbsafe drill run`` and ``dbsafe verify`` before
anything is written; so are a symlinked target and links planted where a drill writes.
Each check lists and hashes the surroundings — the test's area and a decoy folder the
forged paths aim at — before and after.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import Vault, free_port, make_area, make_vault, remove_area

from dbsafe.core.errors import DbsafeError
from dbsafe.services.handle.vault_handle import Vault as ServiceVault
from dbsafe.services.restore import drills
from dbsafe.services.restore import instance as restore_service
from dbsafe.vault.entries import path_key

ESCAPE = "../" * 12  # from any depth below /var/tmp, up to /


@dataclass
class Hostile:
    vault: Vault
    point: str
    manifest: dict
    area: Path
    decoy: Path


@pytest.fixture(scope="module")
def hostile(source, module_area: Path, cli_env: dict[str, str]) -> Iterator[Hostile]:
    """A plain vault (restore root: the module's area) with one real full of the source,
    and a decoy folder outside the area: root-owned, 0755, with a file and an empty
    folder (what a target link or a forged ``dirs`` entry would take over)."""
    vault = make_vault(cli_env, module_area / "vault")
    vault.add_server("src", source)
    point = vault.backup("src")["point_id"]
    decoy = make_area("decoy-")
    try:
        os.chown(decoy, 0, 0)
        (decoy / "etc").mkdir()
        (decoy / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
        (decoy / "empty").mkdir()
        for folder in (decoy, decoy / "etc", decoy / "empty"):
            os.chmod(folder, 0o755)
        yield Hostile(vault, point, vault.repository().load_manifest_whole(point), module_area,
                      decoy)
    finally:
        remove_area(decoy)


def surroundings(h: Hostile, but: Path | None = None) -> dict:
    """Every entry of the area (the vault's own folder aside: its catalog records the
    refusals; and ``but``, a drill's scratch root) and of the decoy: type and mode, owner,
    size, content hash or link."""
    out = {}
    for top in (h.area, h.decoy):
        for dirpath, dirs, files in os.walk(top):
            if Path(dirpath) == h.area:
                dirs[:] = [d for d in dirs if d != "vault" and h.area / d != but]
            for name in [".", *dirs, *files]:
                path = Path(dirpath, name)
                st = path.lstat()
                if path.is_symlink():
                    body = os.readlink(path)
                elif path.is_file():
                    body = hashlib.sha256(path.read_bytes()).hexdigest()
                else:
                    body = None
                out[str(path)] = (st.st_mode, st.st_uid, st.st_gid, st.st_size, body)
    return out


def forge(h: Hostile, n: int, change, parts: bool | None = None) -> str:
    """A manifest like the real one, changed by ``change``, saved as a new point the way a
    writer of the storage can (a plain vault: the keyed hash's key is in config): its file
    entries inline (as manifests of before) or, when ``parts`` (default: every other
    ``n``), in parts of 200 entries, in the order ``change`` left them."""
    doc = copy.deepcopy(h.manifest)
    doc["point_id"] = f"20260101T0000{n:02d}Z-f0f0f0{n:02x}"
    change(doc, h.decoy)
    repo = h.vault.repository()
    if parts if parts is not None else n % 2:
        files = doc.pop("files")
        for i in range(0, len(files), 200):
            repo.save_part(doc["point_id"], i // 200, json.dumps(
                {"format": 1, "point_id": doc["point_id"], "part": f"{i // 200:06d}",
                 "files": files[i:i + 200]}).encode())
        doc["entries"] = {"parts": -(-len(files) // 200), "files": len(files)}
    repo.save_manifest(doc)
    return doc["point_id"]


def in_order(files: list[dict]) -> None:
    files.sort(key=lambda e: path_key(e["path"]))


def _file(doc: dict, path: str, mode: int = 0o600) -> dict:
    """A file entry of the forged manifest: the real PG_VERSION's blocks under a new name."""
    real = next(f for f in doc["files"] if f["path"] == "PG_VERSION")
    return {**real, "path": path, "mode": mode}


FORGERIES = {
    "dotdot path": lambda d, decoy: (d["files"].append(
        _file(d, f"{ESCAPE}{str(decoy)[1:]}/etc/passwd")), in_order(d["files"])),
    "absolute path": lambda d, decoy: (d["files"].append(
        _file(d, str(decoy / "etc/passwd"))), in_order(d["files"])),
    "pg_tblspc dotdot": lambda d, decoy: (d["files"].append(
        _file(d, f"pg_tblspc/{ESCAPE}{str(decoy)[1:]}/etc/passwd")), in_order(d["files"])),
    "a file below a file": lambda d, decoy: (d["files"].append(
        _file(d, "PG_VERSION/etc/passwd")), in_order(d["files"])),
    "absolute dirs": lambda d, decoy: d["dirs"].append(
        {"path": str(decoy / "etc"), "mode": 0o777, "type": "dir"}),
    "setuid mode": lambda d, decoy: (d["files"].append(_file(d, "pg_su", 0o4755)),
                                     in_order(d["files"])),
    # entries in parts are in path order: one out of it (a path twice, across two
    # parts) is refused as the parts are read (vault/entries.py)
    "a path twice": lambda d, decoy: d["files"].insert(300, d["files"][100]),
    "dotdot wal": lambda d, decoy: d["wal"].append(
        {**d["wal"][0], "path": f"{ESCAPE}{str(decoy)[1:]}/etc/passwd"}),
    "tablespace oid": lambda d, decoy: d["tablespaces"].append(
        {"oid": f"{ESCAPE}{str(decoy)[1:]}", "location": str(decoy / "empty")}),
    "tablespace location": lambda d, decoy: d["tablespaces"].append(
        {"oid": "16999", "location": f"{decoy}/../{decoy.name}/empty"}),
}


def test_forged_manifests_are_refused_before_anything_is_written(hostile: Hostile):
    h = hostile
    before = surroundings(h)
    scratch = h.area / "scratch"
    for n, (what, change) in enumerate(FORGERIES.items()):
        point = forge(h, n, change)
        for args in (["restore", "src", "--point", point, "--to-pgdata", h.area / "r",
                      "--port", free_port()],
                     ["restore", "src", "--point", point, "--as-files", h.area / "f"],
                     ["verify", "src", "--point", point],
                     ["drill", "run", "src", "--point", point, "--scratch-root", scratch]):
            out = h.vault.fail("vault.manifest_invalid", *args)
            assert point in out["error"]["message"], (what, out)
        assert surroundings(h) == before, what
    # verifying every point: each forged one is reported, the real one still verified
    res = h.vault.run("verify", "src", "--json")
    assert res.returncode != 0 and res.json()["error"]["code"] == "verify.failed"
    reports = {r["point_id"]: r for r in res.json()["report"]["points"]}
    assert reports[h.point]["ok"] is True
    assert {r["problems"][0]["problem"] for p, r in reports.items() if p != h.point} == {
        "manifest_invalid"}
    assert surroundings(h) == before


def test_an_evil_tablespace_location_is_refused(hostile: Hostile):
    """A location that passes the manifest's rules is a target like any other: below the
    restore roots and new, or refused."""
    h = hostile
    before = surroundings(h)
    point = forge(h, 40, lambda d, decoy: (
        d["tablespaces"].append({"oid": "16999", "location": str(decoy / "empty")}),
        d["dirs"].append({"path": "pg_tblspc/16999", "mode": 0o700, "type": "tablespace"}),
        d["files"].append(_file(d, "pg_tblspc/16999/PG_15_202209061/5/16400"))))
    out = h.vault.fail("restore.tablespace_target", "restore", "src", "--point", point,
                       "--to-pgdata", h.area / "r")
    assert "16999" in out["error"]["message"]
    out = h.vault.fail("restore.tablespace_target", "restore", "src", "--point", point,
                       "--to-pgdata", h.area / "r", "--tablespace-map", f"16999={h.decoy}/x")
    assert surroundings(h) == before


def test_a_target_through_a_link_is_refused(hostile: Hostile):
    h = hostile
    (h.area / "link").symlink_to(h.decoy / "empty")
    (h.area / "midway").symlink_to(h.decoy)
    try:
        before = surroundings(h)
        for target in (h.area / "link", h.area / "midway" / "empty" / "r"):
            for mode in ("--to-pgdata", "--as-files"):
                out = h.vault.fail("restore.target_unsafe", "restore", "src", "--point",
                                   h.point, mode, target)
                assert "is a link" in out["error"]["message"]
        assert surroundings(h) == before
    finally:
        (h.area / "link").unlink()
        (h.area / "midway").unlink()


# --- links the cluster's owner plants where a drill writes ------------------------------

def _drill(h: Hostile, scratch: Path) -> str:
    """How the drill ended: its error, or "passed"; its scratch folder is gone either way."""
    try:
        drills.run_drill(ServiceVault.open(h.vault.path), "src", h.point, scratch_root=scratch)
    except DbsafeError as exc:
        return f"[{exc.code}] {exc.message}"
    finally:
        assert not list(scratch.iterdir())
    return "passed"


def test_a_link_planted_in_the_drill_folder_is_not_followed(hostile: Hostile, monkeypatch):
    """The drill's folder stays root's; were a link planted where the data directory goes
    (the postgres user could, when the folder was handed to it before the restore), the
    restore refuses it instead of writing and chowning through it."""
    h = hostile
    scratch = h.area / "scratch-plant"
    real = drills.run_restore
    owners = []

    def planted_first(vault, name, point_id, *, to_pgdata, **kw):
        owners.append(to_pgdata.parent.stat().st_uid)
        to_pgdata.symlink_to(h.decoy / "empty")  # an empty root-owned folder elsewhere
        return real(vault, name, point_id, to_pgdata=to_pgdata, **kw)

    monkeypatch.setattr(drills, "run_restore", planted_first)
    before = surroundings(h, but=scratch)
    message = _drill(h, scratch)
    assert surroundings(h, but=scratch) == before  # not written, chowned nor chmodded
    assert "restore.target_unsafe" in message, message
    assert owners == [0]  # the drill's folder was never the postgres user's


@pytest.mark.parametrize("plant,refusal", [("global/pg_control", "restore.write_failed"),
                                           ("postgresql.auto.conf", "restore.start_failed")])
def test_links_planted_after_the_hand_over_are_not_followed(hostile: Hostile, monkeypatch,
                                                            plant: str, refusal: str):
    """Once the data directory is the postgres user's, dbsafe still writes pg_control and
    backup_label (last) and the settings of each start: a link planted at those names is
    neither written through nor read."""
    h = hostile
    scratch = h.area / "scratch-after"
    real = restore_service.sync_trees

    def plant_then_sync(folders):
        (pgdata,) = scratch.glob("drill-*/pgdata")
        assert pgdata.stat().st_uid != 0  # handed over to the cluster's owner
        (pgdata / plant).unlink(missing_ok=True)
        (pgdata / plant).symlink_to(h.decoy / "etc" / "passwd")
        return real(folders)

    monkeypatch.setattr(restore_service, "sync_trees", plant_then_sync)
    before = surroundings(h, but=scratch)
    message = _drill(h, scratch)
    assert refusal in message, message
    assert surroundings(h, but=scratch) == before
