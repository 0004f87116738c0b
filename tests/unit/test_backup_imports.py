"""A backup's process stays lean: the fleet group it imports to know where a backup runs
(services/fleet/dispatch.py) loads the restore group, and with it pydantic (about 12 MB of
a full's peak RSS, bench/README.md), only where a restore, a check, a verify or a drill is
dispatched."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("pydantic", "fastapi", "numpy")


def test_the_backup_command_and_the_fleet_group_load_no_pydantic():
    code = ("import sys\n"
            "import dbsafe.cli.commands.backup\n"
            "from dbsafe.services import backup, fleet\n"
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "", f"a backup's imports load {out.stdout.strip()}"


def test_a_tracked_differential_loads_no_numpy():
    """The change map keeps its block numbers as uint32 arrays sorted in C: numpy's import
    cost every differential ~0.08 s of its start (bench/README.md)."""
    code = ("import sys\n"
            "import dbsafe.services.backup.take, dbsafe.services.backup.tracked\n"
            "import dbsafe.engines.postgres.changemap\n"
            "print('numpy' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
