"""dbsafe backup NAME --type full|copy-only|diff|log"""

from __future__ import annotations

import typer

from dbsafe.cli import render
from dbsafe.cli.context import open_vault
from dbsafe.core import bounds
from dbsafe.core.defaults import LOG_WAIT_SECONDS


def backup(name: str = typer.Argument(..., help="A registered server."),
           type: str = typer.Option("full", "--type", help=(
               "full, copy-only, diff (the pages changed since the latest full, not "
               "copy-only, that holds its databases) or log (the WAL up to now, archived).")),
           compress_level: int = typer.Option(
               None, "--compress-level", min=0, max=22,
               help="zstd level for this backup's new blocks; 0 stores raw (default: the "
                    "server's policy's compression, level 1 without a policy)."),
           workers: int = typer.Option(None, min=bounds.WORKERS[0], max=bounds.WORKERS[1],
                                       help="Reader threads (default: the core count)."),
           db: list[str] = typer.Option(None, "--db",
                                        help="Back up only these databases (repeat; the "
                                             "point is a full or base of those only); "
                                             "default: the protected ones."),
           synthetic: bool = typer.Option(
               False, "--synthetic",
               help="full: build it from the latest full plus the pages the WAL says "
                    "changed, when the rules allow (docs/policies.md); it reads every file "
                    "otherwise and says why."),
           wait: float = typer.Option(LOG_WAIT_SECONDS, min=bounds.WAIT_SECONDS[0],
                                      max=bounds.WAIT_SECONDS[1],
                                      help="log: seconds to wait for the WAL to reach the "
                                           "vault.")) -> None:
    """Back up a server into the vault: a full, copy-only full, differential or log backup."""
    from dbsafe.services import backup as backups
    from dbsafe.services import fleet

    if type not in backups.REQUEST_TYPES:
        raise typer.BadParameter(f"must be one of {', '.join(backups.REQUEST_TYPES)}",
                                 param_hint="--type")
    if synthetic and type != "full":
        raise typer.BadParameter("only a full is built synthetically", param_hint="--synthetic")
    request = backups.BackupRequest(name, type, db or None, compress_level, workers, wait,
                                    synthetic=synthetic)
    with render.progress(f"{type} backup {name}") as bar:
        result = fleet.take_backup(open_vault(), request, bar)
    if type == "log":
        render.emit(result, _human_log)
        return

    def human(r: dict) -> None:
        render.out.print(
            f"{r['type']} backup of {name}: point {r['point_id']}\n"
            f"  read {render.human_bytes(r['bytes_read'])} in {r['seconds']} s "
            f"({r['mb_per_second']} MB/s), stored {render.human_bytes(r['bytes_stored'])} new "
            f"(zstd level {r['compression_level']}, {r['compression_from']})\n"
            f"  LSN {r['start_lsn']} → {r['stop_lsn']}, timeline {r['timeline']}, "
            f"{r['files']} files, {r['wal_segments']} WAL segments")
        build = r.get("build") or {}
        if build.get("kind") == "synthetic":
            render.out.print(
                f"  built from full {build['source']} and the {r['pages_changed']} pages "
                f"changed since (synthetic {build['layers']} since the read full "
                f"{build['read_full']}); {render.human_bytes(r['bytes_read_data'])} read "
                "from the data directory")
        elif build.get("reason"):
            render.out.print(f"  read every file: {build['reason']}")
        if r["type"] == "diff":
            render.out.print(
                f"  since full {r['base']} (LSN {r['base_start_lsn']}): "
                f"{r['pages_changed']} pages changed; files: {r['files_whole']} whole, "
                f"{r['files_delta']} changed, {r['files_unchanged']} unchanged "
                f"({r['files_not_read']} not read), {r['files_dropped']} dropped")
            render.out.print(f"  pages chosen by {_source(r.get('delta_source') or {})}; "
                             f"{render.human_bytes(r['bytes_read_data'])} read from the "
                             "data directory")
        if r["corrupt_pages"]:
            render.err.print(f"[yellow]warning[/yellow]: {r['corrupt_pages']} page(s) failed "
                             "their checksum; see --json for the list")

    render.emit(result, human)


def _source(source: dict) -> str:
    """How a differential chose its pages, in words (docs/change-map.md)."""
    if source.get("source") == "wal":
        return (f"the WAL since the full ({source['segments']} segment(s), "
                f"{source['blocks']} blocks named)")
    if source.get("source") == "server-summaries":
        return f"the server's WAL summaries ({source['blocks']} blocks named)"
    return f"scanning page LSNs ({source.get('reason', 'no change map')})"


def _human_log(r: dict) -> None:
    render.out.print(f"log backup of {r['server']}: point {r['point_id']}, WAL to "
                     f"{r['stop_lsn']} (timeline {r['timeline']}, {r['segments']} segment(s)) "
                     "is in the vault")
    if r["restorable_until"]:
        render.out.print(f"  point-in-time restore possible until {r['restorable_until']}")
    for w in r["warnings"]:
        render.err.print(f"[yellow]warning[/yellow]: {w['message']}")
