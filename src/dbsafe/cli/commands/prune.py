"""dbsafe delete-point POINT... | dbsafe gc"""

from __future__ import annotations

import typer

from dbsafe.cli import render
from dbsafe.cli.context import open_vault
from dbsafe.core import bounds


def delete_point(points: list[str] = typer.Argument(..., help="Point ids (see `dbsafe points`)."),
                 reason: str = typer.Option("deleted by the user", "--reason",
                                            help="Recorded with the delete job.")) -> None:
    """Delete recovery points: soft-deleted (kept, undeletable) for the vault's soft-delete
    days, else at once; their blocks are freed by a `dbsafe gc` after they are gone."""
    from dbsafe.services import lifecycle

    result = lifecycle.delete_points(open_vault(), points, reason)
    ids = ", ".join(p["point_id"] for p in result["deleted"])
    render.emit(result, lambda r: render.out.print(
        f"soft-deleted {len(r['deleted'])} point(s): {ids}; kept until {r['purge_after']} "
        "(`dbsafe undelete` brings them back)" if r["soft"] else
        f"deleted {len(r['deleted'])} point(s): {ids}; run `dbsafe gc` to free their blocks"))


def gc(wait: float = typer.Option(0, "--wait", min=bounds.WAIT_SECONDS[0],
                                  max=bounds.WAIT_SECONDS[1],
                                  help="Seconds to wait for running backups to end, to "
                                       "delete what they held back."),
       repack_unused: float = typer.Option(
           None, "--repack-unused", min=0, max=100,
           help="Rewrite a pack whose unused share is at least this percentage (100: never; "
                "default 50).")) -> None:
    """Delete the packs no recovery point and no archived WAL file uses (safe while backups
    run)."""
    from dbsafe.services import lifecycle

    share = lifecycle.REPACK_UNUSED if repack_unused is None else repack_unused / 100
    result = lifecycle.run_gc(open_vault(), wait, share)

    def human(r: dict) -> None:
        render.out.print(f"freed {render.human_bytes(r['bytes_freed'])} "
                         f"({r['packs_deleted']} pack(s)); {r['packs_total']} pack(s) kept")
        if r["packs_repacked"]:
            render.out.print(f"repacked {r['packs_repacked']} pack(s): wrote "
                             f"{render.human_bytes(r['bytes_repacked'])} of used blocks")
        if r["tombstones_pending"]:
            render.out.print(f"{r['tombstones_pending']} batch(es) of unused packs wait for "
                             f"{len(r['waiting_for'])} running writer(s); run `dbsafe gc` "
                             "again after they end")
        if r["reclaimable_bytes"]:
            render.out.print(f"{render.human_bytes(r['reclaimable_bytes'])} unused in "
                             f"{r['partially_used_packs']} pack(s) that also hold used "
                             "blocks (not reclaimed: packs are not rewritten)")

    render.emit(result, human)
