#!/usr/bin/env bash
# Install everything the tests need, then run the linters (ruff, the import contracts, mypy)
# and the whole test suite.
# Tests create real PostgreSQL clusters (as the postgres OS user, under /var/tmp): 15, and
# every supported major in the version matrix (installed by install.sh --test).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --test
.venv/bin/ruff check src tests bench
# the layers (import-linter contracts) and the types (mypy; strict in core, storage, vault,
# policy), both configured in pyproject.toml
.venv/bin/lint-imports
.venv/bin/mypy
# integration tests mostly wait (servers, archiving, the scheduler's clock): 3 workers on 2
# cores; tests of one file share a worker (module fixtures)
exec .venv/bin/python -m pytest -q -n 3 --dist loadfile tests "$@"
