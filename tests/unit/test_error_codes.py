"""Every error code dbsafe can report is in the registry (core/errors.py), so in
docs/errors.md too: read from the source, statically, wherever a code is written down —
``DbsafeError("family.name")``, a job row's ``error_code``, ``exc.code`` compared or
assigned, a ``(code, details)`` refusal returned for a caller to raise, tuples of codes."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from dbsafe.core.errors import REGISTRY

SRC = Path(__file__).resolve().parents[2] / "src" / "dbsafe"
CODE = re.compile(r"[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*|internal")
CODE_NAMES = {"code", "error_code"}
# DbsafeError(...) whose code is computed: the codes it can be are read by the rules of
# ``_codes`` (the assignment to ``code``, the refusal's returned tuples); a new computed
# raiser must be added here once its codes are seen to be read.
COMPUTED_RAISERS = {
    ("services/restore/targets.py", "refused[0]"),
    ("vault/packs.py", "code"),
    ("core/errors.py", "'system.no_space' if exc.errno in NO_SPACE else 'system.io_failed'"),
}


def _strings(node: ast.AST) -> list[str]:
    """The strings in ``node`` shaped like a dbsafe code (an SDK's ``NoSuchBucket`` or a
    subscript's ``"error_code"`` are not)."""
    return [n.value for n in ast.walk(node)
            if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and CODE.fullmatch(n.value)]


def _is_code_target(node: ast.AST) -> bool:
    return (isinstance(node, ast.Name) and node.id in CODE_NAMES) or \
        (isinstance(node, ast.Attribute) and node.attr in CODE_NAMES)


def _codes(tree: ast.AST, rel: str, computed: set) -> list[tuple[str, int]]:
    """(code, line) of every string written in a place that holds an error code."""
    found: list[tuple[str, ast.AST]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = getattr(node.func, "id", getattr(node.func, "attr", None))
            if name == "DbsafeError" and node.args:
                first = node.args[0]
                if isinstance(first, ast.Constant):
                    found.append((first.value, node))
                else:
                    computed.add((rel, ast.unparse(first)))
            found += [(s, node) for kw in node.keywords if kw.arg in CODE_NAMES
                      for s in _strings(kw.value)]
        elif isinstance(node, ast.Dict):
            found += [(s, node) for k, v in zip(node.keys, node.values, strict=True)
                      if isinstance(k, ast.Constant) and k.value in CODE_NAMES
                      and not isinstance(v, ast.JoinedStr)  # warnings: coexistence.<kind>
                      for s in _strings(v)]
        elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            flat = [t for target in targets for t in ast.walk(target)]
            if any(_is_code_target(t) for t in flat) or any(
                    isinstance(t, ast.Name) and t.id.endswith("CODES") for t in flat):
                found += [(s, node) for s in _strings(node.value)]
        elif isinstance(node, ast.Compare) and (
                _is_code_target(node.left) or any(_is_code_target(c)
                                                  for c in node.comparators)):
            found += [(s, node) for c in [node.left, *node.comparators] for s in _strings(c)]
        elif isinstance(node, ast.Return) and isinstance(node.value, ast.Tuple) and \
                node.value.elts and isinstance(node.value.elts[0], ast.Constant) and \
                isinstance(node.value.elts[0].value, str) and \
                CODE.fullmatch(node.value.elts[0].value) and len(node.value.elts) == 2 and \
                isinstance(node.value.elts[1], ast.Dict):
            found.append((node.value.elts[0].value, node))  # a refusal: (code, details)
    return [(code, node.lineno) for code, node in found]


def test_every_error_code_in_the_source_is_in_the_registry():
    missing, computed, seen = [], set(), set()
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        for code, line in _codes(ast.parse(path.read_text()), rel, computed):
            seen.add(code)
            if code not in REGISTRY:
                missing.append(f"{rel}:{line}: {code!r}")
    assert not missing, "codes missing from core/errors.py (and docs/errors.md):\n" + \
        "\n".join(missing)
    assert computed == COMPUTED_RAISERS, "a DbsafeError with a computed code: check that " \
        "_codes reads every code it can be, then list it in COMPUTED_RAISERS"
    # the scan reads what it should: codes only known from those places
    assert {"job.abandoned", "job.interrupted", "vault.block_corrupt",
            "restore.target_outside_roots", "backup.read_only_db"} <= seen
