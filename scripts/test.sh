#!/usr/bin/env bash
# Install everything the tests need, then run the linter and the whole test suite.
# Tests create real PostgreSQL 15 clusters (as the postgres OS user, under /var/tmp).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --test
.venv/bin/ruff check src tests bench
exec .venv/bin/python -m pytest -q tests "$@"
