"""dbsafe backup NAME --type full|copy-only|diff"""

from __future__ import annotations

import typer

from dbsafe.cli import render
from dbsafe.cli.context import open_vault
from dbsafe.services.backup import BACKUP_TYPES, DEFAULT_LEVEL, run_backup


def backup(name: str = typer.Argument(..., help="A registered server."),
           type: str = typer.Option("full", "--type", help=(
               "full, copy-only, or diff: the pages changed since the latest full "
               "(not copy-only).")),
           compress_level: int = typer.Option(DEFAULT_LEVEL, "--compress-level", min=0, max=22,
                                              help="zstd level for new blocks; 0 stores raw."),
           workers: int = typer.Option(None, help="Reader threads (default: the core count)."),
           json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Take a full, copy-only full or differential backup of a server into the vault."""
    render.state.json = json
    if type not in BACKUP_TYPES:
        raise typer.BadParameter(f"must be one of {', '.join(BACKUP_TYPES)}", param_hint="--type")
    with render.progress(f"backup {name}") as bar:
        result = run_backup(open_vault(), name, type, compress_level, workers, bar)

    def human(r: dict) -> None:
        render.out.print(
            f"{r['type']} backup of {name}: point {r['point_id']}\n"
            f"  read {render.human_bytes(r['bytes_read'])} in {r['seconds']} s "
            f"({r['mb_per_second']} MB/s), stored {render.human_bytes(r['bytes_stored'])} new\n"
            f"  LSN {r['start_lsn']} → {r['stop_lsn']}, timeline {r['timeline']}, "
            f"{r['files']} files, {r['wal_segments']} WAL segments")
        if r["type"] == "diff":
            render.out.print(
                f"  since full {r['base']} (LSN {r['base_start_lsn']}): "
                f"{r['pages_changed']} pages changed; files: {r['files_whole']} whole, "
                f"{r['files_delta']} changed, {r['files_unchanged']} unchanged "
                f"({r['files_not_read']} not read), {r['files_dropped']} dropped")
        if r["corrupt_pages"]:
            render.err.print(f"[yellow]warning[/yellow]: {r['corrupt_pages']} page(s) failed "
                             "their checksum; see --json for the list")

    render.emit(result, human)
