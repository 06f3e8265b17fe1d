#!/usr/bin/env bash
# Start what the test suite needs on this machine when it is not running: PostgreSQL.
set -euo pipefail

url="${TEST_DATABASE_URL:-postgresql+asyncpg://postgres@127.0.0.1:5432/test}"
hostport="${url#*@}"; hostport="${hostport%%/*}"
host="${hostport%%:*}"; port="${hostport##*:}"

pg_up() { (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; }

if ! pg_up; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    echo "PostgreSQL is not answering on $host:$port: starting it"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start || true
  fi
  for _ in $(seq 1 60); do pg_up && break; sleep 0.5; done
fi
if ! pg_up; then
  echo "PostgreSQL is not reachable at $host:$port (TEST_DATABASE_URL); the suite needs it." >&2
  exit 1
fi
