"""SQL sent to a protected (or staged, or restored) PostgreSQL server lives in
``engines/postgres/`` only: services call its functions (``status.is_in_recovery(conn)``,
``archiving.switch_wal(conn)``, ...) and decide what the answers mean.

The rule, checked on the syntax tree of every ``src/dbsafe/services/**/*.py``:

- no call of ``.execute``, ``.executemany``, ``.fetchone``, ``.fetchall``, ``.fetchmany``,
  ``.scalar`` or ``.cursor`` on anything but the vault's catalog (a receiver whose source
  text names ``catalog``: ``vault.catalog``, ``dbsafe.catalog`` is not a protected
  cluster);
- no string literal (f-string parts included) that starts with an SQL command word in
  upper case (SELECT, SHOW, ALTER, SET, ... below) followed by a space, ``(``, ``;`` or
  its end; prose in docstrings and messages starts with a capital letter only ("Delete
  ...", "Set ...") and does not match;
- no use of a name ending in ``_SQL`` (an engine's statement handed to a service to run).

And ``SELECT pg_is_in_recovery()`` is asked in one function only (engines/postgres/status.py
``is_in_recovery``).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "dbsafe"
SERVICES = SRC / "services"

QUERY_METHODS = {"execute", "executemany", "fetchone", "fetchall", "fetchmany", "scalar",
                 "cursor"}
SQL_WORDS = ("SELECT", "SHOW", "ALTER", "SET", "RESET", "CREATE", "DROP", "GRANT", "REVOKE",
             "CHECKPOINT", "COPY", "BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE",
             "INSERT", "UPDATE", "DELETE", "TRUNCATE", "VACUUM", "ANALYZE", "WITH", "DO",
             "CALL", "LOCK", "LISTEN", "NOTIFY")
SQL_START = re.compile(r"^\s*(?:" + "|".join(SQL_WORDS) + r")(?:[\s(;]|$)")


def cluster_sql(root: Path) -> list[str]:
    """Every place under ``root`` that breaks the rule, as "path:line: what"."""
    found = []
    for path in sorted(root.rglob("*.py")):
        where = path.relative_to(root.parent)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in QUERY_METHODS
                    and "catalog" not in ast.unparse(node.func.value)):
                found.append(f"{where}:{node.lineno}: {ast.unparse(node.func)[:60]}(...)")
            elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
                  and SQL_START.match(node.value)):
                found.append(f"{where}:{node.lineno}: {node.value[:60]!r}")
            elif ((isinstance(node, ast.Name) and node.id.endswith("_SQL"))
                  or (isinstance(node, ast.Attribute) and node.attr.endswith("_SQL"))):
                found.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_services_send_no_sql_to_a_cluster():
    found = cluster_sql(SERVICES)
    assert not found, ("SQL to a cluster belongs in a function of engines/postgres/, "
                       "called by the service:\n" + "\n".join(found))


def test_the_rule_finds_what_it_forbids(tmp_path):
    services = tmp_path / "services"
    services.mkdir()
    (services / "m.py").write_text(
        'def f(conn, vault, stats):\n'
        '    conn.execute("SELECT pg_is_in_recovery()").fetchone()\n'
        '    vault.catalog.execute("x")\n'
        '    q = f"SHOW {x}"\n'
        '    conn.execute(stats.POSITION_SQL)\n'
        '    """Delete the points. Set the region. SELECTED is a word."""\n')
    found = cluster_sql(services)
    assert [f.split(":")[1] for f in found].count("2") == 3  # execute, fetchone, literal
    assert any(":4:" in f for f in found) and any(":5:" in f and "POSITION_SQL" in f
                                                   for f in found)
    assert not any(":3:" in f or ":6:" in f for f in found)


def test_in_recovery_is_asked_in_one_function():
    places = [f"{path.relative_to(SRC)}" for path in SRC.rglob("*.py")
              for _ in range(path.read_text().count('"SELECT pg_is_in_recovery()"'))]
    assert places == ["engines/postgres/status.py"]
