"""docs/security.md names, for each boundary, the tests that prove it: every test file and
test it names must exist (a renamed or dropped test would leave a boundary unproved while
the page still claims it)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# `tests/integration/test_x.py::name`, `integration/test_x.py`, `test_x.py` (found in any of
# the test folders), or `::name` (same file as the reference before it)
REFERENCE = re.compile(r"(?:tests/)?((?:(?:unit|integration|corruption|browser)/)?test_\w+\.py)"
                       r"|::(test_\w+)")


def references(text: str) -> list[tuple[str, str | None]]:
    found, current = [], None
    for match in REFERENCE.finditer(text):
        if match.group(1):
            current = match.group(1)
            found.append((current, None))
        elif current is not None:
            found.append((current, match.group(2)))
    return found


def test_every_test_the_security_page_names_exists():
    refs = references((ROOT / "docs" / "security.md").read_text())
    assert len(refs) > 40
    missing = []
    for file, name in refs:
        paths = [ROOT / "tests" / file] if "/" in file else \
            list((ROOT / "tests").glob(f"*/{file}"))
        path = paths[0] if paths else ROOT / "tests" / file
        if not path.is_file():
            missing.append(file)
        elif name and not re.search(rf"^(async )?def {name}\b", path.read_text(), re.M):
            missing.append(f"{file}::{name}")
    assert not missing, f"docs/security.md names tests that do not exist: {missing}"
