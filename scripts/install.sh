#!/usr/bin/env bash
# Install what dbsafe needs on Debian 12: PostgreSQL 15 (if absent), a virtualenv in .venv
# with dbsafe and, with --test, the test tools. Safe to run again: it skips what is there.
set -euo pipefail
cd "$(dirname "$0")/.."

with_test=0
[ "${1:-}" = "--test" ] && with_test=1
# --bench also installs the benchmarks' peers and tools (pgBackRest, wrk)
with_bench=0
for arg in "$@"; do [ "$arg" = "--bench" ] && with_bench=1; done

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_packages=()
[ -x /usr/lib/postgresql/15/bin/initdb ] || apt_packages+=(postgresql-15)
command -v python3 >/dev/null || apt_packages+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || apt_packages+=(python3-venv)
# the page-checksum C extension is compiled at install: a C compiler and Python's headers
command -v gcc >/dev/null || apt_packages+=(gcc)
python3 -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
  || apt_packages+=(python3-dev)
command -v runuser >/dev/null || apt_packages+=(util-linux)
if [ ${#apt_packages[@]} -gt 0 ]; then
  echo "installing: ${apt_packages[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_packages[@]}" >/dev/null
fi
# --bench: the peers and tools of bench/ (Debian's packages): pgBackRest for bench/run.py,
# wrk for the loopback load of bench/portal_load.py
bench_packages=()
if [ $with_bench = 1 ]; then
  command -v pgbackrest >/dev/null || bench_packages+=(pgbackrest)
  command -v wrk >/dev/null || bench_packages+=(wrk)
fi
if [ ${#bench_packages[@]} -gt 0 ]; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${bench_packages[@]}" >/dev/null
fi
id postgres >/dev/null 2>&1 || { echo "the postgres OS user is missing (postgresql-15 creates it)" >&2; exit 1; }

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
extras=""
[ $with_test = 1 ] && extras="[test]"
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".${extras}" 2>&1 \
  | grep -v -i -E "^WARNING: Location|is ignored" || true
# object storage test server (issue 7, storage): Azurite, Microsoft's Azure Storage emulator,
# from npm into tools/node (project-local). 3.35 is the newest that runs on Node 18 (Debian 12).
if [ $with_test = 1 ] && [ ! -x tools/node/node_modules/.bin/azurite-blob ]; then
  if ! command -v npm >/dev/null; then
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
  fi
  mkdir -p tools/node
  npm install --prefix tools/node --no-audit --no-fund --loglevel=error azurite@3.35.0 >/dev/null
fi
# browser tests (issue 8, portal): Debian's chromium, driven by playwright-core from npm into
# tools/node; 1.61.1 is the newest playwright-core that runs on Node 18 (Debian 12).
if [ $with_test = 1 ]; then
  if [ ! -x /usr/bin/chromium ]; then
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
  if [ ! -d tools/node/node_modules/playwright-core ]; then
    mkdir -p tools/node
    npm install --prefix tools/node --no-audit --no-fund --loglevel=error \
      playwright-core@1.61.1 >/dev/null
  fi
fi
# end of browser tests
.venv/bin/dbsafe --help >/dev/null
