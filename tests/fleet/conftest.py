"""Fixtures of the fleet tests: a fleet of simulated hosts per test (see hosts.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .hosts import Fleet, namespaces_available


@pytest.fixture
def namespaces() -> None:
    """Skip the test where namespaces cannot be made (saying which capability is missing)."""
    ok, reason = namespaces_available()
    if not ok:
        pytest.skip(reason)


@pytest.fixture
def fleet(namespaces: None, pg_template: Path) -> Iterator[Fleet]:
    """A fresh fleet (bridge, no hosts yet) whose clusters copy the session's template;
    torn down after the test, whatever its outcome."""
    with Fleet(template=pg_template) as fleet:
        yield fleet
