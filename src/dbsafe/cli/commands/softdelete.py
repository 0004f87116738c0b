"""dbsafe undelete POINT... | dbsafe purge | dbsafe vault soft-delete | dbsafe vault immutability"""

from __future__ import annotations

import typer

from dbsafe.cli import render
from dbsafe.cli.context import open_vault


def undelete(points: list[str] = typer.Argument(..., help="Soft-deleted point ids (see "
                                                          "`dbsafe points NAME "
                                                          "--deleted`).")) -> None:
    """Bring soft-deleted recovery points back, restorable as before."""
    from dbsafe.services import lifecycle

    result = lifecycle.undelete(open_vault(), points)
    render.emit(result, lambda r: render.out.print(
        f"undeleted {len(r['undeleted'])} point(s): "
        f"{', '.join(p['point_id'] for p in r['undeleted'])}"
        + (f" (with their base full(s) {', '.join(r['bases_undeleted'])})"
           if r["bases_undeleted"] else "")))


def purge() -> None:
    """Delete for good the soft-deleted points whose soft-delete retention has ended (what
    `dbsafe serve` also does after each backup); their blocks go at the next `dbsafe gc`."""
    from dbsafe.services import lifecycle

    result = lifecycle.purge_due(open_vault())

    def human(r: dict) -> None:
        render.out.print(f"purged {len(r['purged'])} point(s)"
                         + (f": {', '.join(r['purged'])}" if r["purged"] else ""))
        for pid, until in r["held"].items():
            render.out.print(f"{pid}: kept by the immutable vault until {until}")
        for pid, diffs in r["waiting"].items():
            render.out.print(f"{pid}: waits for differential(s) {', '.join(diffs)}")

    render.emit(result, human)


def soft_delete(days: int = typer.Option(None, "--days", help="Days a deleted point is kept "
                                                              "before it is purged (14-180)."),
                off: bool = typer.Option(False, "--off", help="Delete points for good at "
                                                              "once.")) -> None:
    """Show or set how long deleted points are kept (soft delete; on, 14 days by default)."""
    from dbsafe.services import lifecycle

    vault = open_vault()
    if off or days is not None:
        result = lifecycle.set_soft_delete(vault, days, enabled=not off)
    else:
        result = lifecycle.settings(vault)
    sd = result["soft_delete"]
    kept = f"on: deleted points are kept {sd['days']} days" if sd["enabled"] else "off"
    render.emit(result, lambda r: render.out.print(
        f"soft delete {kept}; immutability {r['immutability']}"))


def immutable(state: str = typer.Argument(None, help="on | off | locked (irreversible); "
                                                     "default: show it.")) -> None:
    """Show or set vault immutability: while on or locked, no point is deleted before its
    retention ends and soft delete cannot be shortened; locked cannot be undone."""
    from dbsafe.services import inventory, lifecycle

    vault = open_vault()
    if state is not None:
        inventory.set_immutability(vault, state)
    result = lifecycle.settings(vault)
    render.emit(result, lambda r: render.out.print(f"immutability {r['immutability']}"))
