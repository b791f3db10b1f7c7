#!/usr/bin/env bash
# The test command: installs what the tests need on a fresh Debian/Ubuntu
# machine (Node.js >= 20 + the pinned npm oidc-provider, redis-server, a
# Python venv with the pinned django-oauth-toolkit), then
# runs `cargo test` with any arguments given (e.g. `--test sessions`).
set -euo pipefail
cd "$(dirname "$0")/.."

apt_install() {
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq "$@"
  else
    sudo apt-get update -qq && sudo apt-get install -y -qq "$@"
  fi
}

# Node.js + npm run the real OpenID Provider (npm oidc-provider) in tests/.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  apt_install nodejs npm
fi
node_major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
if [ "$node_major" -lt 20 ]; then
  echo "error: Node.js >= 20 is needed for tests/oidc-provider, found $(node -v 2>/dev/null || echo none)." >&2
  echo "Debian 12's own nodejs package is 18. Install Node.js 20 or newer from NodeSource's" >&2
  echo "Debian packages or with nvm, then run this again." >&2
  exit 1
fi
npm ci --prefix tests/oidc-provider --no-audit --no-fund

# redis-server: the Redis session store tests (tests/sessions.rs) start one
# on a free loopback port.
if ! command -v redis-server >/dev/null; then
  apt_install redis-server
fi

# Python 3 with venv: the second real OpenID Provider (django-oauth-toolkit,
# tests/django-provider, for tests/django_provider.rs) runs from a venv with
# the pinned requirements.
django_venv=tests/django-provider/.venv
if [ ! -x "$django_venv/bin/python" ] || ! "$django_venv/bin/python" -c 'import oauth2_provider, waitress' 2>/dev/null; then
  if ! command -v python3 >/dev/null || ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    apt_install python3 python3-venv
  fi
  rm -rf "$django_venv"
  python3 -m venv "$django_venv"
  "$django_venv/bin/pip" install -q --disable-pip-version-check -r tests/django-provider/requirements.txt
fi

# nginx: the forward-auth example (deploy/nginx/) is run in front of the
# gateway by tests/forward_auth_nginx.rs.
if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then
  apt_install nginx
fi

cargo test "$@"

# Trace export (cargo feature `otel`): its end-to-end test against an
# in-process OTLP receiver (tests/otel.rs), when no arguments pick tests.
if [ "$#" = 0 ]; then
  cargo test --features otel --test otel
fi
