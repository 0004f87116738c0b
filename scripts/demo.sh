#!/usr/bin/env bash
# dbsafe end to end on a machine with nothing set up: install, create a demo PostgreSQL
# cluster with sample data, a local vault, protect it (FULL recovery model: WAL archived
# into the vault by the dbsafe agent), take a full backup, note an instant, change data,
# take a log backup and a copy-only full, restore the instance as it was at that instant
# into a new data directory, start it on another port, and show that the restored data
# equals the data at that instant; then start `dbsafe serve` (scheduler, REST API, portal)
# and ask the API what the portal's dashboard shows.
#   --keep   leave the demo clusters and the portal running at the end (default: stop them)
set -euo pipefail
cd "$(dirname "$0")/.."
keep=0; [ "${1:-}" = "--keep" ] && keep=1

bash scripts/install.sh
DBSAFE="$PWD/.venv/bin/dbsafe"
BIN=/usr/lib/postgresql/15/bin
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

DEMO=$(mktemp -d /var/tmp/dbsafe-demo-XXXXXX)
chmod 755 "$DEMO"
[ "$(id -u)" = 0 ] && chown postgres "$DEMO"
export DBSAFE_HOME="$DEMO/vault"
SRC="$DEMO/source"; DST="$DEMO/restored"
PORT=$(free_port); RPORT=$(free_port)
while [ "$RPORT" = "$PORT" ]; do RPORT=$(free_port); done
WPORT=8270
SERVE_PID=""

cleanup() {
  if [ $keep = 0 ]; then
    [ -n "$SERVE_PID" ] && kill "$SERVE_PID" 2>/dev/null && wait "$SERVE_PID" 2>/dev/null || true
    as_pg "$BIN/pg_ctl" -D "$DST" stop -m fast >/dev/null 2>&1 || true
    as_pg "$BIN/pg_ctl" -D "$SRC" stop -m fast >/dev/null 2>&1 || true
    "$DBSAFE" agent stop >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT
psql_src() { as_pg "$BIN/psql" -X -q -h "$DEMO" -p "$PORT" -d demo -At "$@"; }
psql_dst() { as_pg "$BIN/psql" -X -q -h "$DST" -p "$RPORT" -d demo -At "$@"; }
CHECKSUM_SQL="SELECT string_agg(t || ' ' || (xpath('/row/c/text()',
  query_to_xml(format('SELECT md5(coalesce(string_agg(x::text, chr(10) ORDER BY x::text), %L)) AS c FROM %I x', '', t), false, true, '')))[1]::text, chr(10) ORDER BY t)
  FROM unnest(ARRAY['pgbench_accounts','pgbench_branches','pgbench_tellers','pgbench_history','notes']) AS t"

echo "== 1. a demo PostgreSQL 15 cluster in $SRC (port $PORT) with sample data"
as_pg "$BIN/initdb" -D "$SRC" --data-checksums -A trust -U postgres >/dev/null
as_pg "$BIN/pg_ctl" -D "$SRC" -l "$DEMO/source.log" -o "-p $PORT -k $DEMO" -w start >/dev/null
as_pg "$BIN/createdb" -h "$DEMO" -p "$PORT" demo
as_pg "$BIN/pgbench" -h "$DEMO" -p "$PORT" -i -s 20 -q demo 2>&1 | tail -1
psql_src -c "CREATE TABLE notes AS SELECT g AS id, md5(g::text) AS body FROM generate_series(1, 200000) g"

echo "== 2. a local vault in $DBSAFE_HOME"
"$DBSAFE" vault init
"$DBSAFE" vault restore-roots add "$DEMO"   # restores write only new folders below it
"$DBSAFE" server add demo --pgdata "$SRC" --port "$PORT"
"$DBSAFE" discover demo
"$DBSAFE" protect demo --all --recovery-model full --restart

echo "== 3. a full backup"
FULL=$("$DBSAFE" backup demo --type full --json | python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["point_id"]); print("   read %.1f MB in %.2f s, stored %.1f MB" % (r["bytes_read"]/1e6, r["seconds"], r["bytes_stored"]/1e6), file=sys.stderr)')
echo "   point $FULL"
sleep 1
INSTANT=$(psql_src -c "SELECT clock_timestamp()")
BEFORE=$(psql_src -c "$CHECKSUM_SQL")
echo "   the instant to come back to: $INSTANT"
sleep 1

echo "== 4. change data (a mistake), then a log backup and a copy-only full"
psql_src -c "UPDATE pgbench_accounts SET abalance = abalance + 100 WHERE aid % 10 = 0; DELETE FROM notes WHERE id % 3 = 0; INSERT INTO notes VALUES (-1, 'after the instant');"
"$DBSAFE" backup demo --type log
"$DBSAFE" backup demo --type copy-only
"$DBSAFE" points demo

echo "== 5. restore the instance as it was at $INSTANT into $DST and start it on port $RPORT"
"$DBSAFE" restore demo --time "$INSTANT" --to-pgdata "$DST" --port "$RPORT" --start
"$DBSAFE" verify demo --point "$FULL"

echo "== 6. compare the restored data with the data at that instant"
AFTER=$(psql_dst -c "$CHECKSUM_SQL")
NOW=$(psql_src -c "$CHECKSUM_SQL")
echo "$AFTER" | sed 's/^/   restored: /'
if [ "$AFTER" = "$BEFORE" ] && [ "$AFTER" != "$NOW" ]; then
  echo "OK: every table of the restored server equals the source at $INSTANT (and not the source now)."
else
  echo "MISMATCH: restored data differs from the data at $INSTANT" >&2
  exit 1
fi
"$DBSAFE" jobs

echo "== 7. the portal and the REST API: dbsafe serve on http://127.0.0.1:$WPORT/"
if ! python3 -c "import socket,sys; s=socket.socket(); sys.exit(s.connect_ex(('127.0.0.1', $WPORT)) == 0)"; then
  WPORT=$(free_port)  # 8270 is taken (another dbsafe serve?): any free port will do
fi
"$DBSAFE" serve --port "$WPORT" > "$DEMO/serve.log" 2>&1 &
SERVE_PID=$!
TOKEN=$("$DBSAFE" token create demo-reader --role reader --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
"$PWD/.venv/bin/python" - "$WPORT" "$TOKEN" <<'PY'
import json, sys, time, urllib.request
port, token = sys.argv[1], sys.argv[2]
def get(path):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                 headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)
for _ in range(100):
    try:
        board = get("/api/v1/dashboard")
        break
    except OSError:
        time.sleep(0.2)
else:
    sys.exit("dbsafe serve did not answer; see serve.log")
items = get("/api/v1/items")["items"]
print(f"   {board['items']} protected databases, health {board['health']}")
for i in items:
    print(f"   {i['server']}/{i['database']}: {i['health']}, last backup {i['last_backup']} "
          f"({i['last_backup_type']}), last log {i['last_log']}")
PY
if [ $keep = 1 ]; then
  echo "left running: source on port $PORT (socket in $DEMO), restored on port $RPORT (socket in $DST); vault: $DBSAFE_HOME"
  echo "portal: http://127.0.0.1:$WPORT/ (log in with this reader token: $TOKEN); stop it with: kill $SERVE_PID"
else
  echo "demo clusters and portal stopped; files are in $DEMO (remove it when done)"
fi
