"""The one output path for every command: text for people, JSON for scripts, and errors as
one line with a stable code (the traceback goes to the log file, never to the user)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from dbsafe.core.errors import DbsafeError

if TYPE_CHECKING:
    from rich.console import Console


class _Console:
    """A Rich console made when first used: a command whose only output is JSON never
    imports Rich (~25 ms of every start; scripts and schedulers run many)."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._made: Console | None = None

    def made(self) -> Console:
        if self._made is None:
            from rich.console import Console

            self._made = Console(**self._options)
        return self._made

    def __getattr__(self, name: str) -> Any:
        return getattr(self.made(), name)


# Off a terminal (a pipe, a log), Rich would squeeze tables into 80 columns.
out = _Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err = _Console(stderr=True, highlight=False, soft_wrap=True)


T = TypeVar("T")

class State:
    json: bool = False


state = State()


def emit_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def emit(data: T, human: Callable[[T], None]) -> None:
    if state.json:
        emit_json(data)
    else:
        human(data)


def text(value: object) -> str:
    """A value as one line for people, never a Python repr: nothing for None, yes/no,
    lists joined with ", ", mappings as ``key=value`` (their None values left out)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return ", ".join(f"{k}={text(v)}" for k, v in value.items() if v is not None)
    if isinstance(value, list | tuple):
        return ", ".join(text(v) for v in value)
    return str(value)


INSTANT_KEYS = ("_time", "_at", "created", "last_seen", "last_used", "reported", "expires",
                "started", "finished", "since", "discovered")


def _is_instant(key: object) -> bool:
    return isinstance(key, str) and key.endswith(INSTANT_KEYS)


def cell(key: object, value: object, with_age: bool = False) -> str:
    """``value`` of ``key`` as ``text`` shows it; a recorded instant as people see it
    everywhere (core/stamps.py: ``2026-12-06 22:19:47 UTC``), ``with_age`` followed by how
    long ago."""
    if _is_instant(key) and isinstance(value, str) and value:
        from dbsafe.core import stamps

        try:
            return stamps.shown(value) + (f" ({stamps.age(value)})" if with_age else "")
        except ValueError:  # not an instant after all: as it is
            pass
    return text(value)


def table(rows: Sequence[dict], columns: Sequence[str], title: str | None = None) -> None:
    """``rows`` as a table. Ids (a column ``id`` or ``*_id``) are what other commands take:
    they are never shortened or wrapped, the other columns wrap instead."""
    from rich.table import Table

    t = Table(title=title, show_lines=False)
    for c in columns:
        if c == "id" or c.endswith("_id"):
            widest = max((len(cell(c, r.get(c))) for r in rows), default=0)
            t.add_column(c, no_wrap=True, min_width=max(widest, len(c)))
        else:
            t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(*[escape(cell(c, r.get(c))) for c in columns])
    out.print(t)


def fields(data: dict, keys: Sequence[str] | None = None) -> None:
    """One ``key: value`` line each; a mapping's keys indented below it, a list of
    mappings one ``-`` line per item; values as ``cell`` shows them ("-" for nothing),
    instants with how long ago."""
    for k in keys or list(data):
        _field(k, data.get(k), "")


def _field(key: object, value: object, pad: str) -> None:
    name = f"{pad}[bold]{escape(str(key))}[/bold]:"
    if isinstance(value, dict) and value:
        out.print(name)
        for k, v in value.items():
            _field(k, v, pad + "  ")
    elif isinstance(value, list) and any(isinstance(v, dict) for v in value):
        out.print(name)
        for v in value:
            out.print(f"{pad}  - {escape(text(v))}")
    else:
        out.print(f"{name} {escape(cell(key, value, with_age=True)) or '-'}")


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


@contextmanager
def progress(description: str) -> Iterator[Callable[[int, int], None] | None]:
    """A progress bar on stderr while a job runs (none with --json or off a terminal)."""
    if state.json or not err.is_terminal:
        yield None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                   TransferSpeedColumn(), TimeRemainingColumn(), console=err.made(),
                   transient=True)
    task = bar.add_task(description, total=None)

    def update(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total or None)

    with bar:
        yield update


def escape(text: str) -> str:
    """``text`` with Rich's markup characters escaped (printed as typed)."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def error(exc: DbsafeError) -> None:
    if state.json:
        payload = {"error": exc.as_dict()}
        report = getattr(exc, "report", None)
        if report is not None:
            payload["report"] = report
        emit_json(payload)
    err.print(f"[red]error[/red] {escape(f'[{exc.code}]')} {escape(exc.message)}")
