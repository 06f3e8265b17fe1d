#!/usr/bin/env bash
# Install Debian's `prometheus` package when the binary is missing; the metrics tests run their own
# instance of it (tests/fakes/prometheus.py), never the system service. Idempotent and quiet.
set -euo pipefail

if command -v prometheus >/dev/null 2>&1; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "prometheus is not installed and installing it needs root:" \
    "run 'apt-get install prometheus' as root (or put a prometheus binary on PATH)" >&2
  exit 1
fi

echo "prometheus is not on PATH: installing Debian's prometheus package"
# The package would start (and enable) its own service; the tests do not want it, so forbid
# service starts for the duration of the install and restore whatever policy was there before.
policy=/usr/sbin/policy-rc.d
saved=""
if [ -e "$policy" ]; then
  saved="$(mktemp)"
  cp -p "$policy" "$saved"
fi
restore_policy() {
  if [ -n "$saved" ]; then mv -f "$saved" "$policy"; else rm -f "$policy"; fi
}
trap restore_policy EXIT
printf '#!/bin/sh\nexit 101\n' >"$policy"
chmod 755 "$policy"

# apt and debconf chatter (e.g. "delaying package configuration") is shown only when it fails.
log="$(mktemp)"
if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -qq --no-install-recommends prometheus; } >"$log" 2>&1; then
  cat "$log" >&2
  rm -f "$log"
  echo "installing Debian's prometheus package failed (see above)" >&2
  exit 1
fi
rm -f "$log"

if ! command -v prometheus >/dev/null 2>&1; then
  echo "installed the prometheus package but 'prometheus' is still not on PATH" >&2
  exit 1
fi
