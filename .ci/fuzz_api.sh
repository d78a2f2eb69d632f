#!/usr/bin/env bash
# Schema-driven fuzzing of the API: schemathesis generates requests from /api/schema/ (valid
# and invalid, boundary values, NUL characters) against a live gunicorn serving a freshly
# seeded demo database, authenticated as the admin (who may call every endpoint). Passes when
# no answer is a 5xx. Bounded: FUZZ_MAX_EXAMPLES cases per operation, FUZZ_MAX_TIME seconds.
#
#   .ci/fuzz_api.sh                                  # embedded SQLite in a throwaway var dir
#   FUZZ_DATABASE_URL=postgres://postgres@127.0.0.1:5432/preflab_fuzz .ci/fuzz_api.sh
#
# The last line is key=value pairs: operations, requests, server_errors, seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
# A free port unless told: two fuzz runs (or a demo) on one machine must not meet.
PORT=${FUZZ_PORT:-$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
MAX_EXAMPLES=${FUZZ_MAX_EXAMPLES:-25}
MAX_TIME=${FUZZ_MAX_TIME:-300}
SEED=${FUZZ_SEED:-13}

var=$(mktemp -d -t preflab-fuzz-XXXXXX)
export PREFLAB_VAR_DIR="$var" DEBUG=0 SECRET_KEY="fuzz-$(date +%s%N)-not-a-production-key"
export ALLOWED_HOSTS=127.0.0.1,localhost HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# The fuzzer sends wrong passwords to /api/token/ on purpose; keep the admin's token usable.
export LOGIN_LOCKOUT=0 TOKEN_THROTTLE_RATE=100000/min
unset CELERY_BROKER_URL CELERY_RESULT_BACKEND  # jobs stay queued on the throwaway broker
if [ -n "${FUZZ_DATABASE_URL:-}" ]; then
  export DATABASE_URL="$FUZZ_DATABASE_URL"
  "$PY" - <<'PYEOF'
import os, psycopg
from urllib.parse import urlparse
url = urlparse(os.environ["DATABASE_URL"])
name = url.path.lstrip("/")
admin = os.environ["DATABASE_URL"].rsplit("/", 1)[0] + "/postgres"
with psycopg.connect(admin, autocommit=True) as conn:
    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.execute(f'CREATE DATABASE "{name}"')
PYEOF
else
  unset DATABASE_URL
fi

server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill -TERM "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  if [ -n "${FUZZ_KEEP:-}" ]; then echo "kept $var"; else rm -rf "$var"; fi
}
trap cleanup EXIT

"$PY" manage.py migrate -v0
"$PY" manage.py seed_demo >"$var/seed.log" 2>&1 || { cat "$var/seed.log"; exit 1; }
token=$("$PY" manage.py users token carol)

.venv/bin/gunicorn config.wsgi --bind "127.0.0.1:$PORT" --workers 2 --timeout 60 \
  --access-logfile "$var/access.log" --error-logfile "$var/error.log" >"$var/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 60); do
  curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
  sleep 1
done

start=$(date +%s)
set +e
# DELETE /api/token/ would revoke the admin's own token halfway through. One worker: with two,
# hypothesis' lambda-description cache races ("AST constructor recursion depth mismatch").
# Run from the throwaway dir: schemathesis keeps a .schemathesis/ cache in its working dir.
st="$PWD/.venv/bin/schemathesis"
(cd "$var" && "$st" run "http://127.0.0.1:$PORT/api/schema/" \
  --header "Authorization: Token $token" \
  --checks not_a_server_error \
  --exclude-method DELETE \
  --max-examples "$MAX_EXAMPLES" --max-time "$MAX_TIME" --seed "$SEED" \
  --request-timeout 30 --workers 1 --no-color \
  ${FUZZ_ARGS:-}) 2>&1 | tail -n "${FUZZ_TAIL:-40}"
rc=${PIPESTATUS[0]}
set -e
seconds=$(( $(date +%s) - start ))

# Count from the server's own access log: every status the fuzzer got.
requests=$(wc -l <"$var/access.log")
server_errors=$(awk '{ if ($9 ~ /^5[0-9][0-9]$/) n++ } END { print n + 0 }' "$var/access.log")
operations=$(curl -fsS "http://127.0.0.1:$PORT/api/schema/?format=json" \
  | "$PY" -c "import json,sys; s=json.load(sys.stdin); print(sum(len(v) for v in s['paths'].values()))")
if [ "$server_errors" -gt 0 ]; then
  echo "5xx answers:"; awk '$9 ~ /^5[0-9][0-9]$/' "$var/access.log" | head -n 20
  grep -B2 -A30 "^Traceback" "$var/server.log" | grep -v "^  File .*site-packages" | head -n 120
fi
echo "operations=$operations requests=$requests server_errors=$server_errors seconds=$seconds schemathesis_rc=$rc"
[ "$server_errors" -eq 0 ] && [ "$rc" -eq 0 ]
